"""RELIABILITY.md rows F2, P1 and P3 at the issue's full scale, by command (not a test; root).

    sudo .venv/bin/python bench/reliability_full.py [--rows F2,P1,P3] [--quick] [--out FILE]
        [--lab-prefix rf] [--tcpcopy-args "ARGS"]

Each row runs in its own lab (name ``<--lab-prefix>`` + 6 random characters, destroyed
afterwards, also on failure) with tcpcopy and intercept started directly (the lab tests' copy
rig, ``tests/integration/copyrig.py``), by the same code as its CI lab test
(``tests/integration/reliability/``); ``--quick`` runs the CI scale instead of the full one.

- F2: 100,000 hostile frames (2,000 blind RST/FIN on live tuples, 78,000 L3: bad data offset,
  truncated TCP, fragments, bogus options, RST/FIN/ACK on no session; 20,000 L2: bad IP
  version/IHL/lengths, truncated) during a copy of 1,000 new sessions + 2 kept alive.
  Pass: tcpcopy alive; ``malformed`` = the malformed frames that passed tcpcopy's kernel
  filter; the new sessions copied >= 99.9 %.
- P1: 100,000 SYNs from distinct tuples that never finish, ``--max-sessions 100000 -m 256``.
  The copies go to a listener on the target that holds every connection (never accepts, never
  answers): nginx would close what exceeds its worker_connections. Pass: tcpcopy alive; peak
  RSS without the capture ring (which ``-m`` leaves out) <= 1.1 x ``-m``; every SYN that
  reached the engine created a session or was counted refused (``table_full``/``memory_shed``,
  live sessions shed counted ``sessions_shed``); no stall > 1 s (the longest gap between two
  writes of its stats file, written every 0.2 s by its event loop, minus 0.2 s).
- P3: the target's nginx stopped for 60 s in the middle of 90 s of mixed traffic at 100 req/s.
  Pass: tcpcopy alive; its peak RSS during the stall within +10 % of its RSS when the stall
  began; a new request copied within 10 s of the target's return.

Prints one line per criterion (figure, bound, PASS/FAIL) and the load average around each row;
writes every figure as JSON (``--out``). Exit 0 when every criterion passed, 1 when one failed
or a row could not run, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import string
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.lab import LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from tests.integration.copyrig import Rig  # noqa: E402
from tests.integration.reliability.hostile import F2_FULL, F2Scale, row_f2  # noqa: E402
from tests.integration.reliability.measure import STATS_INTERVAL  # noqa: E402
from tests.integration.reliability.pressure import (  # noqa: E402
    P1_FULL,
    P3_FULL,
    P1Scale,
    P3Scale,
    row_p1,
    row_p3,
)

ROWS = ("F2", "P1", "P3")
MIN_SESSIONS = 0.999
RSS_CAP_FACTOR = 1.1
STALL_MAX = 1.0
RSS_FLAT = 0.10
RESUME_MAX = 10.0

#: (figure, bound, passed) per criterion name
Verdict = Dict[str, Tuple[Any, str, bool]]


def judge_f2(r: Dict[str, Any], scale: F2Scale) -> Verdict:
    d = r["delta"]
    sessions = r["new_session_fidelity"]
    if sessions is None:             # the CI scale's second generator is mixed, not sessions
        sessions = r["fidelity"]
    return {
        "frames sent": (r["frames_sent"], f"= {scale.frames}", r["frames_sent"] == scale.frames),
        "tcpcopy alive": (r["alive"], "true", bool(r["alive"])),
        "malformed = passed the kernel filter": (
            f"{d.get('malformed')} / {r['want_malformed']}", "equal",
            d.get("malformed") == r["want_malformed"]),
        "valid sessions copied": (round(sessions, 5), f">= {MIN_SESSIONS}",
                                  sessions >= MIN_SESSIONS),
    }


def judge_p1(r: Dict[str, Any], scale: P1Scale) -> Verdict:
    c = r["counters"]
    cap = scale.memory_mb * 1024 * RSS_CAP_FACTOR
    own = r["rss_peak_kb"] - r["ring_kb"]       # -m leaves the capture ring out (engine.md)
    # memory_shed/buffer_overflow count live sessions shed (also in sessions_shed) and new
    # ones refused; every SYN that reached the engine created a session or was refused
    refused = (c.get("table_full", 0) + c.get("memory_shed", 0) + c.get("buffer_overflow", 0)
               + c.get("tuple_refused", 0) - c.get("sessions_shed", 0))
    offered, created = c.get("clt_syn", 0), c.get("sessions_created", 0)
    stall = max(0.0, r["max_stats_gap_s"] - STATS_INTERVAL)
    return {
        "tcpcopy alive": (r["alive"], "true", bool(r["alive"])),
        "peak RSS - capture ring (kB)": (
            f"{own} ({r['rss_peak_kb']} - {r['ring_kb']})",
            f"<= {cap:.0f} (-m {scale.memory_mb} x 1.1)", own <= cap),
        "shed sessions counted": (
            f"{created} created + {refused} refused of {offered} SYNs; "
            f"{c.get('sessions_shed', 0)} shed live, {r['sessions_active']} active",
            "created + refused = SYNs", created + refused == offered),
        "longest stall (s)": (round(stall, 2), f"<= {STALL_MAX}", stall <= STALL_MAX),
    }


def judge_p3(r: Dict[str, Any], scale: P3Scale) -> Verdict:
    base, peak = r["rss_at_stall_kb"], r["rss_peak_in_stall_kb"]
    grown = (peak - base) / base if base else 0.0
    first = r["first_copy_in_s"]
    return {
        "tcpcopy alive": (r["alive"] and r["alive_in_stall"], "true",
                          bool(r["alive"] and r["alive_in_stall"])),
        "RSS in the stall vs its start": (
            f"{base} -> {peak} kB ({grown:+.1%}; held "
            f"{r['held_peak_in_stall_bytes'] / 1e6:.1f} MB)", f"<= +{RSS_FLAT:.0%}",
            grown <= RSS_FLAT),
        "first copy after the return (s)": (first, f"<= {RESUME_MAX}",
                                            first is not None and first <= RESUME_MAX),
    }


RUNNERS: Dict[str, Tuple[Callable[..., Dict[str, Any]], Callable[..., Verdict], Any, Any]] = {
    "F2": (row_f2, judge_f2, F2Scale(), F2_FULL),
    "P1": (row_p1, judge_p1, P1Scale(), P1_FULL),
    "P3": (row_p3, judge_p3, P3Scale(), P3_FULL),
}


def lab_name(prefix: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(8 - len(prefix)))


def run_row(row: str, quick: bool, prefix: str, tcpcopy_args: Sequence[str] = ()
            ) -> Dict[str, Any]:
    runner, judge, small, full = RUNNERS[row]
    scale = replace(small if quick else full, tcpcopy_args=tuple(tcpcopy_args))
    out: Dict[str, Any] = {"row": row, "scale": asdict(scale), "quick": quick,
                           "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    name = lab_name(prefix)
    workdir = Path(tempfile.mkdtemp(prefix=f"reliability-{row.lower()}-"))
    t0 = time.monotonic()
    try:
        lab = build_lab(LabSpec(name=name))
        try:
            assert_routes_via_lab(lab)
            rig = Rig(lab, workdir)
            try:
                out["figures"] = runner(rig, scale)
            finally:
                rig.close()
        finally:
            destroy_lab(name)
        verdict = judge(out["figures"], scale)
        out["criteria"] = {k: {"figure": f, "bound": b, "pass": ok}
                           for k, (f, b, ok) in verdict.items()}
        out["pass"] = all(ok for _f, _b, ok in verdict.values())
    except Exception as exc:  # the row could not run: say where, go on with the next row
        out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        out["traceback"] = traceback.format_exc()[-4000:]
        out["pass"] = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["seconds"] = round(time.monotonic() - t0, 1)
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def print_row(res: Dict[str, Any]) -> None:
    print(f"{res['row']} ({'quick' if res['quick'] else 'full'} scale, {res['seconds']} s, "
          f"loadavg before {res['loadavg_before']} after {res['loadavg_after']})")
    if "error" in res:
        print(f"  could not run: {res['error']}")
        return
    width = max(len(k) for k in res["criteria"])
    for k, c in res["criteria"].items():
        print(f"  {k:<{width}}  {c['figure']!s:<40}  {c['bound']:<34}  "
              f"{'PASS' if c['pass'] else 'FAIL'}")


def parse_rows(text: str) -> List[str]:
    rows = [r.strip().upper() for r in text.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        raise ValueError(f"--rows: unknown row {', '.join(bad) or '(none)'}; "
                         f"choose from {','.join(ROWS)}")
    return rows


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help="comma separated: F2,P1,P3")
    p.add_argument("--quick", action="store_true", help="the CI scale instead of the full one")
    p.add_argument("--out", default="", help="write every figure as JSON to this file")
    p.add_argument("--lab-prefix", default="rf", help="lab name prefix (default rf)")
    p.add_argument("--tcpcopy-args", default="", metavar="ARGS",
                   help="more tcpcopy flags for every row, one string (e.g. '-t 5' for P3: a "
                        "busy session whose target is silent 5 s is shed)")
    a = p.parse_args(argv)
    try:
        rows = parse_rows(a.rows)
    except ValueError as exc:
        print(f"reliability_full: {exc}", file=sys.stderr)
        return 2
    if not a.lab_prefix.isalnum() or not a.lab_prefix[:1].isalpha() or len(a.lab_prefix) > 4:
        print("reliability_full: --lab-prefix: 1-4 letters/digits starting with a letter",
              file=sys.stderr)
        return 2
    try:
        extra = shlex.split(a.tcpcopy_args)
    except ValueError as exc:
        print(f"reliability_full: --tcpcopy-args: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("reliability_full: needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    results = []
    for row in rows:
        res = run_row(row, a.quick, a.lab_prefix.lower(), extra)
        print_row(res)
        results.append(res)
        if a.out:
            Path(a.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    ok = all(r["pass"] for r in results)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
