"""Rate sweep (not a test): the highest paced rate our pair copies at >= 99.9 %, per worker count.

    sudo .venv/bin/python bench/rate_sweep.py [--workers 1,2] [--modes keepalive,new]
        [--start 1000] [--max-rate 32000] [--bisect 3] [--seconds 5] [--no-pin] [--quick]
        [--out FILE] [--lab-prefix rs] [--keep-logs DIR] [--ours-python PATH] [--ours-args ..]

One lab, built and destroyed as ``bench/engine_bench.py`` does (its code: lab, copier pair,
scenario runs, all imported). First a probe with the copier off: the lab traffic generator
unpaced (30k keep-alive or 15k new req/s asked, 2 s worth), 1 and 2 processes, per mode, so the
figures below can be read against what the load side can give at all. Then, per worker count N
(our tcpcopy ``--workers N --intercept-workers N``, intercept ``--workers N``) and mode
(``keepalive``: ``--connections`` per generator, default 50; ``new``: a new connection per
request), paced steps at start, 2x start, 4x ... up to ``--max-rate``, each a fresh pair and
``--seconds`` of load, until the first step that does not pass; then up to ``--bisect`` steps
between the last pass and that failure (whatever the limit was). A step **passes**
when fidelity (copies at the target / requests at online, by the step's URI tag) is >= 99.9 %,
the trail (last copy minus client end) <= 2 s, and the generators sent >= 97 % of the asked
rate. When they did not, the load side was the limit: the generators' CPU (their reaped-children
usage) >= 80 % of a core each names the generator, else the online nginx's >= 80 % names online
nginx, else the shared box. Above ``--per-generator`` req/s (default 5000 keep-alive, 2500 new)
the rate is split over several generator processes (``--max-generators``, default 4).

Per step: the rate asked and sent, fidelity, trail, kernel drops, CPU s per 10k copied for
tcpcopy and intercept (parent + workers) and each process's CPU seconds, their memory (sum of
Pss at the end, so pages the workers share count once), the generators' and the online nginx's
CPU use, the verdict. JSON (``--out``) and a printed table. Pinning as in
engine_bench (online nginx on the first CPU, everything else on the second) unless
``--no-pin``; the layout is stated in the output. ``--quick``: keep-alive only, two 1 s steps
(500 and 1,000 req/s) per worker count, no probe, no bisection (a smoke; no thresholds).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import (  # noqa: E402
    add_ours_flags,
    bench_lab,
    box,
    check_ours_flags,
    ours,
    run_main,
)
from bench.sidebyside import procs  # noqa: E402
from bench.sidebyside.scenarios import Scenario, run_one  # noqa: E402
from tests.integration.copyrig import Rig  # noqa: E402

MODES = ("keepalive", "new")
PASS_FIDELITY = 0.999
PASS_TRAIL_S = 2.0
LOAD_SHORT = 0.97           # sent / asked below this: the load side was the limit
BUSY = 0.8                  # a process at or above this share of a core is "the limit"
#: the probe's pace, above what this box's generators reach (so they never wait), 2 s of it
PROBE_RATE = {"keepalive": 30000, "new": 15000}
PROBE_SECONDS = 2.0


def layout(pinning: Optional[Dict[str, Any]], workers: int) -> str:
    cpus = os.cpu_count() or 1
    who = (f"generator(s), target nginx, tcpcopy ({workers} worker{'s' * (workers > 1)}) and "
           f"intercept ({workers} worker{'s' * (workers > 1)})")
    if pinning:
        note = "; the workers share that one core" if workers > 1 else ""
        return (f"pinned: online nginx on CPU {pinning['online_nginx_cpu']}; {who} on CPU "
                f"{pinning['rest_cpu']}{note}")
    return f"not pinned: online nginx, {who} share all {cpus} CPUs (the scheduler's choice)"


def nginx_cpu(rig: Rig) -> Dict[int, float]:
    pid = int((rig.lab.host("online").dir / "nginx.pid").read_text().split()[0])
    return procs.part_of(procs.cpu_tree(pid))


def generators_for(a: argparse.Namespace, mode: str, rate: int) -> int:
    per = a.per_generator or (5000 if mode == "keepalive" else 2500)
    return max(1, min(a.max_generators, math.ceil(rate / per)))


def step(a: argparse.Namespace, rig: Rig, copier: Any, mode: str, rate: int, gens: int,
         tag: str, seconds: float = 0.0) -> Dict[str, Any]:
    """One paced run at ``rate`` (copier None: the probe); the row with its verdict."""
    sc = Scenario(f"{mode}-{rate}", "paced", seconds or a.seconds, a.connections * gens, mode,
                  rate, generators=gens)
    n0 = nginx_cpu(rig)
    row = run_one(rig, sc, copier, tag, 1.0 if a.quick else 3.0, 20.0 if a.quick else 30.0)
    n1 = nginx_cpu(rig)
    secs = row.get("client_s") or 0.0
    client = row.get("client", {})
    row.update(mode=mode, rate_asked=rate, generators=gens, rate_sent=client.get("rate"),
               client_errors=client.get("errors"),
               generator_core_share=round(client.get("generator_cpu_s", 0.0) / secs / gens, 2)
               if secs else None,
               online_nginx_core_share=round(sum(procs.tree_delta(n0, n1).values()) / secs, 2)
               if secs else None)
    if copier is not None:
        row["verdict"], row["limit"] = verdict(row)
    return row


def verdict(row: Dict[str, Any]) -> Tuple[str, str]:
    """("pass" | "fail", what limited): the copier (fidelity, trail) before the load side."""
    fid, trail = row.get("fidelity") or 0.0, row.get("trail_s") or 0.0
    if fid < PASS_FIDELITY or trail > PASS_TRAIL_S:
        return "fail", "copier"
    if (row.get("rate_sent") or 0.0) < LOAD_SHORT * row["rate_asked"]:
        if (row.get("generator_core_share") or 0.0) >= BUSY:
            return "fail", "generator"
        if (row.get("online_nginx_core_share") or 0.0) >= BUSY:
            return "fail", "online nginx"
        return "fail", "box (CPUs shared)"
    return "pass", ""


def sweep(a: argparse.Namespace, rig: Rig, copier: Any, workers: int, mode: str,
          rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Doubling steps, then bisection; the summary of one (workers, mode)."""
    def one(rate: int) -> Dict[str, Any]:
        row = step(a, rig, copier, mode, rate, generators_for(a, mode, rate),
                   f"s{len(rows) + 1}w{workers}")
        row["workers"] = workers
        rows.append(row)
        print(json.dumps({k: row.get(k) for k in SHOW}), flush=True)
        return row

    rates = list(a.rates or [])
    if not rates:
        r = a.start
        while r <= a.max_rate:
            rates.append(r)
            r *= 2
    good: Optional[Dict[str, Any]] = None
    bad: Optional[Dict[str, Any]] = None
    for rate in rates:
        row = one(rate)
        if row["verdict"] != "pass":
            bad = row
            break
        good = row
    if bad is not None and not a.quick:
        lo, hi = (good["rate_asked"] if good else 0), bad["rate_asked"]
        for _ in range(a.bisect):
            mid = int(round((lo + hi) / 2 / 250.0) * 250)
            if mid <= lo or mid >= hi:
                break
            row = one(mid)
            if row["verdict"] == "pass":
                lo, good = mid, row
            else:
                hi, bad = mid, row
    return {"workers": workers, "mode": mode,
            "highest_pass_asked": good["rate_asked"] if good else None,
            "highest_pass_sent": good["rate_sent"] if good else None,
            "first_fail_asked": bad["rate_asked"] if bad else None,
            "limit": bad["limit"] if bad else "none reached",
            "fail_detail": {k: bad.get(k) for k in ("rate_sent", "fidelity", "trail_s",
                                                     "kernel_drops")} if bad else None}


#: the columns printed per step (and the step lines while it runs)
SHOW = ("workers", "mode", "rate_asked", "generators", "rate_sent", "client_errors",
        "fidelity", "trail_s",
        "kernel_drops", "cpu_s_per_10k", "cpu_s_procs", "pss_mb", "generator_core_share",
        "online_nginx_core_share", "verdict", "limit")


def run(a: argparse.Namespace) -> Dict[str, Any]:
    result: Dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "box": box(),
        "quick": a.quick, "seconds": a.seconds,
        "pass_rule": {"fidelity_min": PASS_FIDELITY, "trail_max_s": PASS_TRAIL_S,
                      "sent_min_share": LOAD_SHORT},
    }
    probe: List[Dict[str, Any]] = []
    steps: List[Dict[str, Any]] = []
    summary: List[Dict[str, Any]] = []
    with bench_lab(a) as (rig, pinning):
        result["pinning"] = pinning
        result["layout"] = {str(n): layout(pinning, n) for n in a.workers}
        if not a.quick:
            for mode in a.modes:
                for gens in (1, 2):
                    row = step(a, rig, None, mode, PROBE_RATE[mode], gens,
                               f"p{len(probe) + 1}", PROBE_SECONDS)
                    probe.append({k: row.get(k) for k in (
                        "mode", "generators", "rate_sent", "generator_core_share",
                        "online_nginx_core_share")})
                    probe[-1]["errors"] = row["client"].get("error_kinds")
                    print(json.dumps(probe[-1]), flush=True)
        for mode in a.modes:
            for n in a.workers:
                copier = ours(a.per_workers[n], rig)
                result.setdefault("versions", {})[str(n)] = copier.versions()
                summary.append(sweep(a, rig, copier, n, mode, steps))
    result.update(probe=probe, steps=steps, summary=summary,
                  finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  loadavg_after=list(os.getloadavg()))
    return result


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        return "/".join(fmt(x) for x in v.values())
    if isinstance(v, list):
        return "+".join(fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(result: Dict[str, Any]) -> str:
    lines = []
    if result["probe"]:
        lines.append("generator probe (copier off, unpaced 2 s): mode, generators -> req/s sent "
                     "(generator core share, online nginx core share)")
        lines += [f"  {p['mode']}, {p['generators']} -> {fmt(p['rate_sent'])} "
                  f"({fmt(p['generator_core_share'])}, {fmt(p['online_nginx_core_share'])})"
                  + (f" errors {p['errors']}" if p.get("errors") else "")
                  for p in result["probe"]]
    heads = ("w", "mode", "asked", "gens", "sent", "fidelity", "trail", "drops tc/ic",
             "s/10k tc/ic", "cpu s per process tc/ic", "PSS MB", "gen", "nginx", "verdict")
    widths = (3, 10, 7, 5, 8, 9, 6, 12, 12, 30, 12, 5, 6, 22)
    lines.append("".join(f"{h:<{w}}" for h, w in zip(heads, widths)))
    for r in result["steps"]:
        cells = (r["workers"], r["mode"], r["rate_asked"], r["generators"], r["rate_sent"],
                 r.get("fidelity"), r.get("trail_s"), r.get("kernel_drops"),
                 r.get("cpu_s_per_10k"), r.get("cpu_s_procs"), r.get("pss_mb"),
                 r.get("generator_core_share"),
                 r.get("online_nginx_core_share"),
                 r["verdict"] + (f" ({r['limit']})" if r["limit"] else ""))
        lines.append("".join(f"{fmt(c):<{w}}" for c, w in zip(cells, widths)))
    lines.append("")
    lines.append("highest rate copied at >= 99.9 % (trail <= 2 s):")
    for s in result["summary"]:
        lines.append(f"  workers {s['workers']}, {s['mode']}: {fmt(s['highest_pass_asked'])} "
                     f"req/s asked ({fmt(s['highest_pass_sent'])} sent); first fail "
                     f"{fmt(s['first_fail_asked'])}: limit {s['limit']}")
    for n, text in result["layout"].items():
        lines.append(f"  layout, {n} worker(s): {text}")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--workers", default="1,2", metavar="N,...",
                   help="worker counts to sweep (default 1,2)")
    p.add_argument("--modes", default=",".join(MODES), metavar="MODE,...",
                   help="keepalive and/or new (default both)")
    p.add_argument("--start", type=int, default=1000, help="first rate, req/s (default 1000)")
    p.add_argument("--max-rate", type=int, default=32000, help="last doubling (default 32000)")
    p.add_argument("--rates", metavar="R,...",
                   help="these rates instead of the doubling from --start (still stops at the "
                        "first failure)")
    p.add_argument("--bisect", type=int, default=3, help="bisection steps (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="load per step (default 5)")
    p.add_argument("--per-generator", type=int, default=0, metavar="R",
                   help="req/s per generator process (default 5000 keep-alive, 2500 new)")
    p.add_argument("--max-generators", type=int, default=4, help="(default 4)")
    p.add_argument("--connections", type=int, default=50, metavar="C",
                   help="connections (threads) per generator process (default 50); in "
                        "keep-alive each carries rate/(C x generators) req/s")
    p.add_argument("--quick", action="store_true",
                   help="keep-alive, 500 and 1000 req/s for 1 s per worker count, no probe")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--out", default=str(REPO / "bench" / "rate_sweep.json"))
    p.add_argument("--keep-logs", metavar="DIR", help="copy every run's files to DIR")
    p.add_argument("--lab-prefix", default="rs", help="lab name prefix (default rs)")
    add_ours_flags(p)
    a = p.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9]{0,3}", a.lab_prefix):
        p.error("--lab-prefix: 1-4 characters, a lowercase letter then letters/digits")
    try:
        a.workers = [int(x) for x in a.workers.split(",") if x.strip()]
    except ValueError:
        p.error(f"--workers: {a.workers!r} is not a list of numbers, e.g. 1,2")
    if not a.workers or any(not 1 <= n <= 64 for n in a.workers):
        p.error("--workers: each count must be 1-64")
    a.modes = [x.strip() for x in a.modes.split(",") if x.strip()]
    if not a.modes or any(m not in MODES for m in a.modes):
        p.error(f"--modes: choose from {','.join(MODES)}")
    if a.ours_workers is not None:
        p.error("--ours-workers: the sweep sets the workers itself; use --workers N,...")
    for name in ("start", "max_rate", "seconds", "max_generators", "connections"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')}: must be positive")
    if a.bisect < 0 or a.per_generator < 0:
        p.error("--bisect and --per-generator: must not be negative")
    if a.rates:
        try:
            a.rates = [int(x) for x in a.rates.split(",") if x.strip()]
        except ValueError:
            p.error(f"--rates: {a.rates!r} is not a list of numbers, e.g. 4000,8000")
        if not a.rates or min(a.rates) <= 0:
            p.error("--rates: each rate must be positive")
    if a.quick:
        a.modes, a.rates, a.seconds, a.bisect = ["keepalive"], [500, 1000], 1.0, 0
    a.per_workers = {}
    for n in a.workers:
        b = copy.copy(a)
        b.ours_workers = n
        check_ours_flags(p, b)
        a.per_workers[n] = b
    return a


def main(argv: Optional[List[str]] = None) -> int:
    return run_main("rate_sweep", parse_args(argv), run, table)


if __name__ == "__main__":
    sys.exit(main())
