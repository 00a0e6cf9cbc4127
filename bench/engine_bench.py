"""Engine benchmark (not a test): copy fidelity, CPU and memory of tcpcopy + intercept.

    sudo .venv/bin/python bench/engine_bench.py [--out bench/engine_bench.json] [--quick]

Builds its own lab (name ``<--lab-prefix>NNNN``, default ``h7b``), runs intercept on the
assistant and tcpcopy on online (3-server topology), then for the keep-alive and
new-connection mixes sends stepped request rates with the lab traffic generator, and
finally unpaced wrk runs (10 and 50 keep-alive connections). Per step: requests online vs
copies at the target (same method/URI/body length), tcpcopy and intercept CPU seconds
(utime+stime from /proc/PID/stat) per 10,000 copied requests. Prints a table and writes
JSON with the highest rate copied at >= 99.9 % per mix and the peak RSS (VmHWM) of both daemons.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.lab import LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from tests.integration.copyrig import Rig  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> Tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK, int(fields[12]) / CLK


def hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def count_tag(counter: Any, tag: str) -> int:
    return sum(n for k, n in counter.items() if tag in k[1])


def wait_quiet(rig: Rig, tag: str, want: int, limit: float = 60.0) -> int:
    last, since, start = -1, time.monotonic(), time.monotonic()
    while True:
        n = count_tag(rig.target_copies(), tag)
        now = time.monotonic()
        if n != last:
            last, since = n, now
        if n >= want or now - since > 3.0 or now - start > limit:
            return n


def add_cpu(row: Dict[str, Any], pids: Dict[str, int], cpu0: Dict[str, Tuple[float, float]],
            cpu1: Dict[str, Tuple[float, float]], copied: int) -> None:
    for k in pids:
        user = cpu1[k][0] - cpu0[k][0]
        used = user + cpu1[k][1] - cpu0[k][1]
        row[f"{k}_cpu_s"] = round(used, 2)
        row[f"{k}_user_s"] = round(user, 2)
        row[f"{k}_cpu_s_per_10k"] = round(used / copied * 10000, 3) if copied else None


def step(rig: Rig, pids: Dict[str, int], mix: str, rate: int, seconds: float,
         conns: int, tag: str) -> Dict[str, Any]:
    total = int(rate * seconds)
    cpu0 = {k: cpu_split(p) for k, p in pids.items()}
    t0 = time.monotonic()
    res = rig.traffic("--requests", str(total), "--mode", mix, "--connections", str(conns),
                      "--rate", str(rate), "--get-paths", f"/?{tag}", timeout=seconds * 4 + 60)
    elapsed = time.monotonic() - t0
    online = count_tag(rig.online_truth(), tag)
    copied = wait_quiet(rig, tag, online)
    cpu1 = {k: cpu_split(p) for k, p in pids.items()}
    row: Dict[str, Any] = {
        "mix": mix, "rate_asked": rate, "rate_achieved": round(online / elapsed, 1),
        "connections": conns, "online": online, "copied": copied,
        "fidelity": round(copied / online, 5) if online else 0.0,
        "client_errors": sum(res.get("errors", {}).values()) if isinstance(
            res.get("errors"), dict) else res.get("errors"),
    }
    add_cpu(row, pids, cpu0, cpu1, copied)
    return row


def wrk_step(rig: Rig, pids: Dict[str, int], conns: int, seconds: int) -> Dict[str, Any]:
    before_t = sum(rig.target_copies().values())
    before_o = sum(rig.online_truth().values())
    cpu0 = {k: cpu_split(p) for k, p in pids.items()}
    out = rig.ns("client", ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                            f"http://{rig.online}/"]).stdout
    online = sum(rig.online_truth().values()) - before_o
    t_end = time.monotonic()
    copied = wait_quiet(rig, "/", before_t + online) - before_t
    drain = time.monotonic() - t_end
    cpu1 = {k: cpu_split(p) for k, p in pids.items()}
    row: Dict[str, Any] = {"mix": f"wrk-keepalive-c{conns}", "rate_achieved":
                           round(online / seconds, 1), "connections": conns, "online": online,
                           "copied": copied, "fidelity": round(copied / online, 5) if online
                           else 0.0, "drain_s": round(drain, 1),
                           "wrk": out.strip().splitlines()[-2:]}
    add_cpu(row, pids, cpu0, cpu1, copied)
    return row


def run(quick: bool, wrk_only: bool = False, prefix: str = "h7b") -> Dict[str, Any]:
    name = prefix + secrets.token_hex(2)
    workdir = Path(tempfile.mkdtemp(prefix="h7bench-"))
    lab = build_lab(LabSpec(name=name))
    assert_routes_via_lab(lab)
    rig = Rig(lab, workdir)
    rows: List[Dict[str, Any]] = []
    try:
        rig.route_pool_via_assistant()
        rig.start_intercept()
        rig.start_tcpcopy()
        pids = {"intercept": rig.procs[0].pid, "tcpcopy": rig.procs[1].pid}
        seconds = 4.0 if quick else 8.0
        plan: List[Tuple[str, List[int], int]] = [
            ("keepalive", [500, 1000, 2000, 4000] if quick else [500, 1000, 2000, 3000, 4000,
                                                                  6000], 10),
            ("new", [250, 500, 1000, 2000] if quick else [250, 500, 1000, 1500, 2000, 3000], 10),
        ]
        if wrk_only:
            plan = []
        n = 0
        for mix, rates, conns in plan:
            for rate in rates:
                n += 1
                row = step(rig, pids, mix, rate, seconds, conns, f"s{n}x")
                rows.append(row)
                print(json.dumps(row), flush=True)
        if shutil.which("wrk"):
            for conns in (10, 50):
                row = wrk_step(rig, pids, conns, 5 if quick else 10)
                rows.append(row)
                print(json.dumps(row), flush=True)
        peak = {k: round(hwm_mb(p), 1) for k, p in pids.items()}
        counters = rig.stats("tcpcopy").get("counters", {})
    finally:
        rig.close()
        destroy_lab(name)
        shutil.rmtree(workdir, ignore_errors=True)
    best: Dict[str, Any] = {}
    for mix in ("keepalive", "new"):
        ok = [r for r in rows if r["mix"] == mix and r["fidelity"] >= 0.999]
        best[mix] = max((r["rate_achieved"] for r in ok), default=0.0)
    return {"rows": rows, "best_rate_at_999": best, "peak_rss_mb": peak,
            "tcpcopy_counters": {k: v for k, v in counters.items() if v},
            "when": time.time()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / "bench" / "engine_bench.json"))
    p.add_argument("--quick", action="store_true", help="shorter steps (CI smoke)")
    p.add_argument("--wrk-only", action="store_true", help="only the unpaced wrk runs")
    p.add_argument("--lab-prefix", default="h7b", help="lab name prefix (default h7b)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("engine_bench: needs root (builds a network-namespace lab)", file=sys.stderr)
        return 2
    result = run(a.quick, a.wrk_only, a.lab_prefix)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'mix':<22}{'rate':>8}{'online':>8}{'copied':>8}{'fid':>9}{'tc s/10k':>10}"
          f"{'ic s/10k':>10}")
    for r in result["rows"]:
        print(f"{r['mix']:<22}{r['rate_achieved']:>8}{r['online']:>8}{r['copied']:>8}"
              f"{r['fidelity']:>9}{r.get('tcpcopy_cpu_s_per_10k')!s:>10}"
              f"{r.get('intercept_cpu_s_per_10k')!s:>10}")
    print("best rate at >= 99.9 %:", result["best_rate_at_999"], "peak RSS MB:",
          result["peak_rss_mb"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
