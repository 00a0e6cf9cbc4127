"""`labctl up` with `engine.select` (issue 9), end to end in a lab: the inventory's selection
becomes tcpcopy's flags, only the selected requests reach the target (keep-alive and new
connections, bodies intact), `labctl status` shows the selection counters, and `labctl verify`
expects copies of the selected requests only. Every test takes the lab down again and leaves
nothing behind (routes, iptables, engine processes)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from labctl.lab import assert_routes_via_lab
from labctl.verify.logparse import LogFormat, LogRecord, parse_text
from tests.integration.test_up_down_helpers import labctl, snapshot, tagged, write_inventory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ENGINE_END = "max_sessions: 65536}"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def with_select(select: str) -> Callable[[str], str]:
    """An inventory edit adding `engine.select` (flow YAML) to the lab's inventory."""
    def edit(text: str) -> str:
        assert ENGINE_END in text
        return text.replace(ENGINE_END, f"max_sessions: 65536, select: {select}}}")
    return edit


@pytest.fixture
def selected_lab(lab: Any, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """up(select) -> the inventory `labctl up` ran with; `down` and the no-leftover checks
    run at teardown, also when the test failed."""
    before = snapshot(lab)
    started: list[Path] = []

    def up(select: str) -> Path:
        inv = write_inventory(lab, tmp_path, edit=with_select(select))
        res = labctl(tmp_path, "up", str(inv))
        started.append(inv)
        assert res.returncode == 0, res.stdout + res.stderr
        return inv

    yield up
    if started:
        down = labctl(tmp_path, "down", str(started[-1]))
        assert down.returncode == 0, down.stdout + down.stderr
    assert snapshot(lab) == before
    assert tagged(lab) == []


def traffic(info: Any, *args: str) -> dict[str, Any]:
    assert_routes_via_lab(info, [info.hosts["online"].address])
    out = subprocess.run(
        [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
         f"http://{info.hosts['online'].address}", "--json", *args],
        capture_output=True, text=True, timeout=180, check=False)
    summary = dict(json.loads(out.stdout))
    assert summary["errors"] == 0, summary
    return summary


def records(info: Any, role: str) -> list[LogRecord]:
    path = Path(info.hosts[role].access_log)
    res = parse_text(path.read_text(errors="replace"), LogFormat("labctl"))
    assert res.malformed == 0, res.samples
    return res.records


def copies(info: Any) -> list[LogRecord]:
    prefix = str(info.fake_pool).rsplit(".", 1)[0] + "."
    return [r for r in records(info, "target") if (r.remote_addr or "").startswith(prefix)]


def originals(info: Any) -> list[LogRecord]:
    prefix = str(info.client_net).rsplit(".", 1)[0] + "."
    return [r for r in records(info, "online") if (r.remote_addr or "").startswith(prefix)]


def settle(info: Any, want: int, timeout: float = 60, quiet: float = 2.0) -> list[LogRecord]:
    """The copies once there are `want` of them and none came for `quiet` s (or, short of
    `want`, once none came for `quiet` s after `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        got = copies(info)
        now = time.monotonic()
        if len(got) != last:
            last, since = len(got), now
        if now - since >= quiet and (len(got) >= want or now > deadline):
            return got
        time.sleep(0.25)


def tcpcopy_status(tmp: Path) -> dict[str, Any]:
    res = labctl(tmp, "status", "--json")
    assert res.returncode == 0, res.stderr
    return dict(next(d for h in json.loads(res.stdout)["hosts"] for d in h["daemons"]
                     if d["name"] == "tcpcopy"))


def wait_judged(tmp: Path, n: int, timeout: float = 20) -> dict[str, Any]:
    """tcpcopy's status once its stats file counts `n` requests judged (selected + skipped;
    the file is rewritten every second)."""
    deadline = time.monotonic() + timeout
    while True:
        tc = tcpcopy_status(tmp)
        c = tc["counters"]
        if c.get("requests_selected", 0) + c.get("requests_skipped", 0) >= n or \
                time.monotonic() > deadline:
            return tc
        time.sleep(0.5)


def bodies(info: Any, role: str) -> list[str]:
    path = Path(info.hosts[role].dir) / "bodies.log"
    return path.read_text().splitlines() if path.exists() else []


def test_allow_host_copies_a_example_only_on_keep_alive_and_new_connections(
        lab: Any, selected_lab: Callable[[str], Path], tmp_path: Path) -> None:
    selected_lab("{allow_host: [a.example]}")
    both = ["--host-header", "a.example,b.example", "--seq-query"]
    traffic(lab, "--requests", "1200", "--connections", "4", "--mode", "keepalive", *both,
            "--get-paths", "/static/ka,/api/ka", "--post-sizes", "")
    traffic(lab, "--requests", "800", "--connections", "4", "--mode", "new", *both,
            "--get-paths", "/api/new", "--post-sizes", "")
    online = originals(lab)
    assert len(online) == 2000
    want = {mode: [r for r in online if r.host == "a.example" and mode in (r.uri or "")]
            for mode in ("/ka", "/new")}
    assert len(want["/ka"]) == 600 and len(want["/new"]) == 400
    got = settle(lab, 1000)
    assert [r for r in got if r.host != "a.example"] == []        # no b.example copy at all
    for mode, recs in want.items():
        arrived = {r.uri for r in got if mode in (r.uri or "")}
        copied = sum(1 for r in recs if r.uri in arrived)
        assert copied >= math.ceil(0.999 * len(recs)), (mode, copied, len(recs))
    tc = wait_judged(tmp_path, len(online))
    assert tc["counters"]["requests_skipped"] >= 1000 - 1, tc["counters"]
    assert tc["counters"]["sessions_unselected"] >= 390, tc["counters"]  # b's new connections
    assert tc["extra"]["select"]["rules"] == ["--allow-host a.example"]
    delay = tc["extra"]["copy_delay_ms"]      # how long copied requests waited in tcpcopy
    assert delay["count"] == tc["counters"]["requests_sent"] >= 1000, (delay, tc["counters"])
    assert 0 <= delay["p50"] <= delay["p99"] <= delay["max"] < 5000, delay


def test_one_keep_alive_connection_carries_exactly_the_api_requests_with_their_bodies(
        lab: Any, selected_lab: Callable[[str], Path], tmp_path: Path) -> None:
    inv = selected_lab("{allow_path: [/api]}")
    plan_out = labctl(tmp_path, "plan", str(inv))
    shown = " ".join(plan_out.stdout.split())
    assert "tcpcopy" in shown and "--allow-path /api" in shown, plan_out.stdout
    assert "note: tcpcopy copies only: path /api" in shown, plan_out.stdout
    plan = ["GET /api/items", "GET /static/app.js", "POST /api/orders 1500",
            "GET /static/app.css", "POST /api/orders 700 chunked", "PUT /api/items/1 300",
            "GET /static/img.png", "PATCH /api/items/2 2500 chunked", "DELETE /api/items/3"]
    args = [a for spec in plan for a in ("--request", spec)]
    summary = traffic(lab, "--requests", "90", "--connections", "1", "--mode", "keepalive",
                      "--seq-query", "--host-header", "a.example", *args)
    assert summary["connections_opened"] == 1
    online = originals(lab)
    want = [(r.method, r.uri, r.content_length) for r in online
            if (r.uri or "").startswith("/api")]
    assert len(online) == 90 and len(want) == 60
    got = settle(lab, len(want))
    assert [(r.method, r.uri, r.content_length) for r in got] == want     # in order, no more
    assert len({r.connection for r in got}) == 1                            # one connection
    assert [r.connection_requests for r in got] == list(range(1, 61))
    assert all(r.status == 200 for r in got), [r.status for r in got if r.status != 200]
    assert not [ln for ln in Path(lab.hosts["target"].error_log).read_text().splitlines()
                if "client sent" in ln], "the target's nginx rejected a copied request"
    sent = bodies(lab, "online")
    assert len(sent) == 40                   # every write of the plan has a body line
    assert bodies(lab, "target") == sent     # the same bodies, byte for byte, in order


def test_safe_copies_reads_and_never_a_write(lab: Any,
                                             selected_lab: Callable[[str], Path]) -> None:
    selected_lab("{safe: true}")
    plan = ["GET /api/a", "POST /api/b 100", "HEAD /api/c", "PUT /api/d 50",
            "DELETE /api/e", "PATCH /api/f 20 chunked", "OPTIONS /api/g", "GET /static/h"]
    args = [a for spec in plan for a in ("--request", spec)]
    traffic(lab, "--requests", "400", "--connections", "2", "--mode", "keepalive",
            "--seq-query", *args)
    traffic(lab, "--requests", "160", "--connections", "2", "--mode", "new",
            "--seq-query", *args)
    online = originals(lab)
    reads = sorted((r.method or "", r.uri or "") for r in online
                   if r.method in ("GET", "HEAD", "OPTIONS"))
    assert len(online) == 560 and len(reads) == 280
    got = settle(lab, len(reads))
    assert [r for r in got if r.method in WRITES] == []
    assert sorted((r.method or "", r.uri or "") for r in got) == reads
    assert bodies(lab, "target") == []


def test_verify_passes_on_the_selected_subset_and_reports_the_filtered(
        lab: Any, selected_lab: Callable[[str], Path], tmp_path: Path) -> None:
    inv = selected_lab("{allow_host: [a.example], allow_path: [/api]}")
    plan = ["GET /api/items", "GET /static/app.js", "POST /api/orders 900", "GET /"]
    args = [a for spec in plan for a in ("--request", spec)]
    both = ["--host-header", "a.example,b.example", "--seq-query", *args]
    traffic(lab, "--requests", "400", "--connections", "2", "--mode", "mixed", *both)
    online = originals(lab)
    selected = [r for r in online if r.host == "a.example" and (r.uri or "").startswith("/api")]
    assert len(online) == 400 and len(selected) == 100
    settle(lab, len(selected))
    wait_judged(tmp_path, len(online))
    res = labctl(tmp_path, "verify", str(inv), "--since-up", "--json")
    doc = json.loads(res.stdout)
    assert res.returncode == 0, (doc["verdict"], res.stderr)
    assert doc["verdict"]["passed"] and not doc["verdict"]["inconclusive"]
    assert doc["online_requests"] == 400 and doc["expected_requests"] == 100
    sel = doc["selection"]
    assert (sel["selected"], sel["filtered"], sel["target_filtered"]) == (100, 300, 0), sel
    assert sel["filtered_by_rule"] == {"--allow-host (none matched)": 200,
                                       "--allow-path (none matched)": 100}
    assert sel["engine_skipped"] == 300 and sel["engine_selected"] == 100, sel
    assert doc["copy_ratio"] >= 0.995 and doc["target_matched"] >= 100 * 0.995
    assert any(n.startswith("selected 100 of 400 online requests (300 filtered")
               for n in doc["notes"])
