"""`labctl compare` against a candidate with known regressions, in a lab with two targets.

The test gives the candidate's nginx (target2) three regressions the baseline does not have:
`/api/err` answers 500 for 20 % of the requests, `/api/slow` answers 200 ms later (a connect
to a port whose SYNs are dropped inside target2's own namespace times out), `/api/body` answers
a longer body. compare must flag exactly those three endpoints, with the right direction, and
none of the others; before the regressions, identical targets flag nothing in 10 runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.integration.copyrig import REPO, log_requests, wait_for
from tests.integration.test_compare_lab import _copies
from tests.integration.test_up_down_helpers import labctl, write_inventory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
PATHS = "/api/err,/api/slow,/api/body,/api/items/1,/static/a"
MARGIN = 5.0
#: quiet time between runs: a window reaches MARGIN s back from when its run began, so more
#: than that, plus the logs' whole seconds, keeps the run before out of it
GAP = MARGIN + 2.0

REGRESSIONS = {
    "http": '    split_clients "${request_id}" $labctl_fail { 20% 1; * 0; }\n',
    "server": '''
        location = /api/err { if ($labctl_fail) { return 500; } return 200 "api\\n"; }
        location = /api/slow {
            proxy_connect_timeout 200ms;
            proxy_pass http://127.0.0.1:9;
            error_page 502 504 =200 @api;
        }
        location @api { return 200 "api\\n"; }
        location = /api/body { return 200 "api, and a longer body than the baseline's\\n"; }
''',
}


def _by_path(info: Any, role: str) -> dict[str, int]:
    prefix = info.fake_pool.rsplit(".", 1)[0] + "."
    out: dict[str, int] = {}
    for (_m, uri, _cl), n in log_requests(info.hosts[role].access_log, prefix).items():
        path = uri.split("?")[0]
        out[path] = out.get(path, 0) + n
    return out


def _settle(count: Callable[[], int], want: int, timeout: float) -> int:
    """`count()` once it reached `want` or stopped growing for 5 s (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        n = count()
        now = time.monotonic()
        if n != last:
            last, since = n, now
        if n >= want or now - since >= 5 or now > deadline:
            return n
        time.sleep(0.5)


def _traffic(info: Any, requests: int) -> None:
    subprocess.run([*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic",
                    "--url", f"http://{info.hosts['online'].address}", "--requests",
                    str(requests), "--mode", "mixed", "--connections", "4", "--rate", "400",
                    "--get-paths", PATHS, "--post-sizes", "0", "--json"],
                   capture_output=True, text=True, timeout=120, check=True, cwd=str(REPO))


def _break_candidate(info: Any) -> None:
    """Give target2's nginx the regressions and reload it (its own pidfile)."""
    host = info.hosts["target2"]
    conf = host.dir / "nginx.conf"
    text = conf.read_text()
    text = text.replace("    upstream labctl_echo {", REGRESSIONS["http"] +
                        "    upstream labctl_echo {", 1)
    text = text.replace("        server_name target2;", "        server_name target2;" +
                        REGRESSIONS["server"], 1)
    conf.write_text(text)
    ns = info.ns_argv("target2")
    subprocess.run([*ns, "iptables", "-w", "-A", "OUTPUT", "-o", "lo", "-p", "tcp",
                    "--dport", "9", "-j", "DROP"], check=True, timeout=30)
    subprocess.run([*ns, "nginx", "-t", "-c", str(conf)], check=True, timeout=30,
                   capture_output=True)
    pid = int((host.dir / "nginx.pid").read_text().split()[0])
    old = _workers(pid)
    subprocess.run(["kill", "-HUP", str(pid)], check=True, timeout=30)
    # the reload is done once the workers that had the old configuration are gone (traffic
    # sent before that may reach one of them and be answered the old way)
    wait_for(lambda: bool(_workers(pid)) and not _workers(pid) & old, 30,
             "target2's nginx running the new configuration")


def _workers(master: int) -> set[str]:
    """The pids of an nginx master's children (its own pidfile's master, not by name)."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True,
                         timeout=30)
    return set(out.stdout.split())


def test_compare_flags_exactly_the_candidates_regressions(lab_factory: Callable[..., Any],
                                                         tmp_path: Path) -> None:
    info = lab_factory(targets=2)
    inv = write_inventory(info, tmp_path)
    up = labctl(tmp_path, "up", str(inv))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        runs = []
        ended = 0.0
        for i in range(10):                      # identical versions: nothing flagged
            # Each run compares its own traffic only: its window reaches MARGIN s before the
            # traffic began (counted back from when compare started; until 2026-12-07 it was
            # from when compare read its clock, after ~1-2.5 s of start-up, and a fixed "3s"
            # cut off most of a run), and the runs are MARGIN s apart, so no window reaches
            # the run before (GAP).
            wait_for(lambda e=ended: time.time() >= e + GAP, GAP + 1, "a quiet gap")
            before = _copies(info, "target2")
            base_before = _copies(info, "target")
            started = time.time()
            _traffic(info, 400)
            ended = time.time()
            wait_for(lambda b=before: _copies(info, "target2") >= b + 399, 30,
                     f"run {i}: copies on target2")
            wait_for(lambda b=base_before: _copies(info, "target") >= b + 399, 30,
                     f"run {i}: copies on target")
            window = f"{time.time() - started + MARGIN:.1f}s"
            res = labctl(tmp_path, "compare", "--window", window, "--json")
            assert res.returncode in (0, 3), f"run {i}: " + res.stdout + res.stderr
            runs.append(json.loads(res.stdout))
        flagged = [[f["endpoint"] for f in r["flags"]] for r in runs]
        assert all(not f for f in flagged), [(i, r["flags"]) for i, r in enumerate(runs)
                                             if r["flags"]]
        failed = [(i, r["verdict"]) for i, r in enumerate(runs) if not r["verdict"]["passed"]]
        assert not failed, failed
        _break_candidate(info)
        wait_for(lambda e=ended: time.time() >= e + GAP, GAP + 1, "a quiet gap")
        before = _copies(info, "target2")
        broken_at = time.time()
        _traffic(info, 1500)
        # the candidate is 200 ms slower on a seventh of the requests: its copies trail
        got_copies = _settle(lambda: _copies(info, "target2") - before, 1500, 120)
        print("copies on target2 after the regressions:", got_copies, "of 1500;",
              _by_path(info, "target2"), "baseline:", _by_path(info, "target"))
        # nginx closes a keep-alive connection after a 500: the candidate's copy of it is
        # started again for the next request (sessions_revived) while the baseline's goes on
        assert got_copies >= 1485, got_copies

        window = f"{time.time() - broken_at + MARGIN:.1f}s"  # only what followed the break
        res = labctl(tmp_path, "compare", "--window", window, "--json", "--report",
                     str(tmp_path / "report"))
        assert res.returncode == 3, res.stdout + res.stderr
        doc = json.loads(res.stdout)
        got = sorted((f["endpoint"], f["kind"], f["direction"]) for f in doc["flags"])
        assert got == [("GET /api/body", "body_size", "changed"),
                       ("GET /api/err", "errors", "worse"),
                       ("GET /api/slow", "latency", "worse")], got
        slow = next(f for f in doc["flags"] if f["kind"] == "latency")
        assert 150 <= slow["shift"] <= 260, slow
        err = next(f for f in doc["flags"] if f["kind"] == "errors")
        # 20 % answered 500, drawn per request: with ~250 requests matched the share is within
        # 4 sd (0.10) of it (a window that cut off the traffic's first seconds left 148 and
        # 0.29 once, outside the old 0.12-0.28)
        assert 0.10 <= err["shift"] <= 0.30, err
        assert (tmp_path / "report" / "report.html").exists()
    finally:
        down = labctl(tmp_path, "down", str(inv))
        assert down.returncode == 0, down.stdout + down.stderr
