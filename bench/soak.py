"""Soak (RELIABILITY.md P2; not a test): a long copy at production rate through a real
`labctl up` on the built-in lab, watching the daemons' memory and open files.

    sudo .venv/bin/python bench/soak.py [--minutes 30] [--rate 1000] [--connections 20]
        [--interval 5] [--warmup S] [--runtime auto|python3|pypy3] [--out FILE]
        [--lab-prefix sk]

Builds its own lab (name ``<--lab-prefix>`` + 4 hex digits, three-server), writes its
inventory, runs ``labctl up`` (the real CLI: SSH, journal, dead-man, daemons), then sends
``--rate`` requests/s for ``--minutes`` from the client namespace (lab traffic generator,
``--mode mixed``: keep-alive bursts and new connections, GET and POST bodies of 0, 512 and
4,096 bytes). Every ``--interval`` seconds it samples VmRSS and the number of open fds of
tcpcopy and intercept (each with its worker processes, from /proc). Afterwards it waits for
the copies to settle, counts what online served and what the target got from the fake pool,
runs ``labctl down`` and destroys the lab (also on failure).

Pass: copies / online requests >= 99.9 %; after the warm-up (``--warmup``, default 10 % of
the run, at least 30 s) each daemon's RSS stays within +-10 % of its value at the end of the
warm-up (the median of the first three samples after it); no fd growth (the most fds in the
last third of the run are at most the most in the first third after the warm-up, + 2 for a
file open at the moment of sampling). Prints one line per figure and the verdict, writes JSON
(``--out``). Exit 0 pass, 1 fail (or the lab/labctl failed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sidebyside.procs import descendants  # noqa: E402
from labctl.errors import LabctlError  # noqa: E402
from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from labctl.lab.inventory import render_lab_inventory  # noqa: E402
from tests.integration.reliability.measure import rss_kb  # noqa: E402

DAEMONS = ("tcpcopy", "intercept")
RATIO_MIN = 0.999
RSS_BAND = 0.10
FD_SLACK = 2


class SoakError(RuntimeError):
    """The soak could not run (labctl or the lab failed); the message says where."""


# -- what is sampled ----------------------------------------------------------------------------
def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sessions_active(stats: Optional[Path]) -> Optional[int]:
    """tcpcopy's live sessions from its stats file (None if unreadable)."""
    try:
        value = json.loads(stats.read_text()).get("sessions_active") if stats else None
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


def sample(pids: Dict[str, int], t0: float, stats: Optional[Path] = None) -> Dict[str, Any]:
    """RSS (MB) and open fds of each daemon, its workers included; tcpcopy's live sessions."""
    row: Dict[str, Any] = {"t": round(time.monotonic() - t0, 1)}
    for name, pid in pids.items():
        procs = descendants(pid) if os.path.exists(f"/proc/{pid}") else []
        row[name] = {"alive": bool(procs), "procs": len(procs),
                     "rss_mb": round(sum(rss_kb(p) for p in procs) / 1024, 2),
                     "fds": sum(fd_count(p) for p in procs)}
    row["tcpcopy"]["sessions_active"] = sessions_active(stats)
    return row


# -- verdict (pure) -----------------------------------------------------------------------------
def judge(samples: List[Dict[str, Any]], warmup: float, online: int, copies: int
          ) -> Dict[str, Any]:
    """The pass/fail figures from the samples and the counts (see the module doc)."""
    out: Dict[str, Any] = {"online_requests": online, "copies": copies,
                           "ratio": copies / online if online else 0.0}
    checks = {"ratio": out["ratio"] >= RATIO_MIN}
    after = [s for s in samples if s["t"] >= warmup]
    for name in DAEMONS:
        d: Dict[str, Any] = {"alive_throughout": all(s[name]["alive"] for s in samples)}
        if len(after) < 6:
            d["problem"] = f"only {len(after)} samples after the warm-up (need 6)"
            checks[f"{name}_rss"] = checks[f"{name}_fds"] = False
        else:
            rss = [s[name]["rss_mb"] for s in after]
            base = statistics.median(rss[:3])
            dev = max(abs(r / base - 1) for r in rss) if base else 1.0
            third = max(1, len(after) // 3)
            fd_first = max(s[name]["fds"] for s in after[:third])
            fd_last = max(s[name]["fds"] for s in after[-third:])
            d.update(rss_base_mb=base, rss_min_mb=min(rss), rss_max_mb=max(rss),
                     rss_last_mb=rss[-1], rss_max_dev=round(dev, 4),
                     fds_first_third_max=fd_first, fds_last_third_max=fd_last,
                     fds_max=max(s[name]["fds"] for s in samples))
            checks[f"{name}_rss"] = dev <= RSS_BAND
            checks[f"{name}_fds"] = fd_last <= fd_first + FD_SLACK
        checks[f"{name}_alive"] = d["alive_throughout"]
        out[name] = d
    out["checks"] = checks
    out["passed"] = all(checks.values())
    return out


# -- the run ------------------------------------------------------------------------------------
def labctl_cmd(env: Dict[str, str], *args: str, timeout: float = 600) -> str:
    argv = [sys.executable, "-c", "import sys; from labctl.cli import main; main()", *args]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False)
    if res.returncode != 0:
        raise SoakError(f"labctl {' '.join(args[:1])} exited {res.returncode}: "
                        f"{(res.stderr or res.stdout)[-800:]}")
    return res.stdout


def daemon_pids(env: Dict[str, str]) -> Dict[str, int]:
    status = json.loads(labctl_cmd(env, "status", "--json"))
    pids = {d["name"]: d["pid"] for h in status["hosts"] for d in h["daemons"]
            if d.get("alive") and d.get("pid")}
    missing = [n for n in DAEMONS if n not in pids]
    if missing:
        raise SoakError(f"labctl status shows no live {', '.join(missing)}")
    return {n: int(pids[n]) for n in DAEMONS}


def log_lines(path: Optional[Path], prefix: str = "") -> int:
    if path is None or not path.exists():
        return 0
    with path.open("rb") as fh:
        want = prefix.encode()
        return sum(1 for line in fh if line.startswith(want))


def settle(lab: LabInfo, prefix: str, want: int, limit: float = 180.0) -> int:
    """Copies at the target once there are `want` or none came for 10 s."""
    log = lab.hosts["target"].access_log
    last, since, start = -1, time.monotonic(), time.monotonic()
    while True:
        n = log_lines(log, prefix)
        now = time.monotonic()
        if n != last:
            last, since = n, now
        if n >= want or now - since > 10 or now - start > limit:
            return n
        time.sleep(1.0)


def traffic_argv(lab: LabInfo, a: argparse.Namespace) -> List[str]:
    total = round(a.minutes * 60 * a.rate)
    return [*lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
            f"http://{lab.hosts['online'].address}", "--requests", str(total), "--rate",
            str(a.rate), "--mode", "mixed", "--connections", str(a.connections),
            "--post-sizes", "0,512,4096", "--json"]


def soak(lab: LabInfo, workdir: Path, a: argparse.Namespace, result: Dict[str, Any]) -> None:
    env = {**os.environ, "LABCTL_STATE_DIR": str(workdir / "state"),
           "XDG_CACHE_HOME": str(workdir / "cache"), "PYTHONPATH": str(REPO)}
    inv = workdir / "inventory.yaml"
    text = render_lab_inventory(lab)
    if a.runtime != "auto":
        text = text.replace("engine: {", f"engine: {{runtime: {a.runtime}, ", 1)
    inv.write_text(text)
    labctl_cmd(env, "up", str(inv))
    result["up"] = True
    try:
        pids = daemon_pids(env)
        status = json.loads(labctl_cmd(env, "status", "--json"))
        result["runtimes"] = {d["name"]: [d.get("runtime"), d.get("workers")]
                              for h in status["hosts"] for d in h["daemons"]}
        stats = Path(lab.dir) / "state" / lab.name / "online" / "tcpcopy.stats"
        t0 = time.monotonic()
        samples = [sample(pids, t0, stats)]
        gen = subprocess.Popen(traffic_argv(lab, a), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            while gen.poll() is None:
                time.sleep(max(0.0, a.interval - (time.monotonic() - t0) % a.interval))
                samples.append(sample(pids, t0, stats))
            out, err = gen.communicate(timeout=60)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait(timeout=30)
        elapsed = time.monotonic() - t0
        summary = json.loads(out) if out.strip() else {}
        if not summary:
            raise SoakError(f"the traffic generator printed no summary: {err[-500:]}")
        online = log_lines(lab.hosts["online"].access_log)
        prefix = str(lab.fake_pool).rsplit(".", 1)[0] + "."
        copies = settle(lab, prefix, online)
        samples.append(sample(pids, t0, stats))
        result["traffic"] = {k: summary.get(k) for k in ("attempted", "sent", "ok", "errors",
                                                         "connections", "latency_ms")}
        result["traffic"]["seconds"] = round(elapsed, 1)
        result["traffic"]["achieved_rate"] = round((summary.get("sent") or 0) / elapsed, 1)
        result["samples"] = samples
        result["final_counters"] = {d["name"]: d.get("counters", {})
                                    for h in json.loads(labctl_cmd(env, "status", "--json"))
                                    ["hosts"] for d in h["daemons"]}
        result["verdict"] = judge(samples, a.warmup, online, copies)
    finally:
        labctl_cmd(env, "down", str(inv))
        result["down"] = True


def report(result: Dict[str, Any]) -> str:
    v, tr = result["verdict"], result["traffic"]
    lines = [f"P2 soak {result['minutes']:g} min at {result['rate']:g} req/s target "
             f"(achieved {tr['achieved_rate']:g} req/s over {tr['seconds']:g} s, "
             f"{tr['connections']} connections, loadavg {result['loadavg_before'][0]:.1f} -> "
             f"{result['loadavg_after'][0]:.1f})",
             f"  online served {v['online_requests']:,}, target got {v['copies']:,} copies: "
             f"ratio {100 * v['ratio']:.3f} % (pass >= {100 * RATIO_MIN:g} %)"]
    for name in DAEMONS:
        d = v[name]
        if "problem" in d:
            lines.append(f"  {name}: {d['problem']}")
            continue
        lines.append(f"  {name}: RSS {d['rss_base_mb']:.1f} MB after warm-up, "
                     f"{d['rss_min_mb']:.1f}..{d['rss_max_mb']:.1f}, last {d['rss_last_mb']:.1f} "
                     f"(max deviation {100 * d['rss_max_dev']:.1f} %, pass <= 10 %); fds "
                     f"{d['fds_first_third_max']} -> {d['fds_last_third_max']} (max "
                     f"{d['fds_max']}); alive throughout: {d['alive_throughout']}")
    failed = [k for k, ok in v["checks"].items() if not ok]
    lines.append("PASS" if v["passed"] else f"FAIL: {', '.join(failed)}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="traffic duration (default 30)")
    p.add_argument("--rate", type=float, default=1000.0, help="requests/s (default 1000)")
    p.add_argument("--connections", type=int, default=20, help="client connections (default 20)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds ignored by the RSS/fd verdict (default 10 %% of the run, "
                        ">= 30)")
    p.add_argument("--runtime", choices=("auto", "python3", "pypy3"), default="auto",
                   help="the daemons' interpreter (engine.runtime; default auto: pypy3 when "
                        "the hosts have it)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "soak.json"))
    p.add_argument("--lab-prefix", default="sk", help="lab name prefix (1-4 characters)")
    a = p.parse_args(argv)
    if not 0 < a.minutes <= 24 * 60:
        p.error("--minutes: must be > 0 and at most 1440")
    if not 0 < a.rate <= 100_000 or a.connections < 1 or not 0.5 <= a.interval <= 600:
        p.error("--rate must be in (0, 100000], --connections >= 1, --interval in [0.5, 600]")
    if a.warmup is None:
        a.warmup = max(30.0, a.minutes * 6)
    if not 0 <= a.warmup < a.minutes * 60:
        p.error("--warmup: must be >= 0 and shorter than the run")
    if not (a.lab_prefix[:1].isalpha() and a.lab_prefix.isalnum() and a.lab_prefix.islower()
            and len(a.lab_prefix) <= 4):
        p.error("--lab-prefix: 1-4 lowercase letters/digits, starting with a letter")
    return a


def main(argv: Optional[List[str]] = None) -> int:
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("soak: needs root (builds a network-namespace lab)", file=sys.stderr)
        return 2
    result: Dict[str, Any] = {
        "command": " ".join(["soak.py", *(sys.argv[1:] if argv is None else argv)]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "minutes": a.minutes, "rate": a.rate, "runtime": a.runtime, "warmup_s": a.warmup,
        "interval_s": a.interval,
        "loadavg_before": list(os.getloadavg()), "cpus": os.cpu_count()}
    name = a.lab_prefix + secrets.token_hex(2)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        lab = build_lab(LabSpec(name=name))
        try:
            assert_routes_via_lab(lab)
            soak(lab, workdir, a, result)
        finally:
            destroy_lab(name)
    except (LabctlError, SoakError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
        print(f"soak: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["loadavg_after"] = list(os.getloadavg())
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"JSON: {a.out}")
    return 0 if result["verdict"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
