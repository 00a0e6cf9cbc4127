"""Fleet benchmark (not a test): wall time of `labctl up` and `labctl down` on the local lab with
1 online host (three hosts: online, target, assistant) and with 16 online hosts (18 hosts).

    sudo .venv/bin/python bench/fleet_bench.py [--online 1,16] [--rounds R] [--parallel N]
        [--against DIR] [--out FILE] [--lab-prefix fb]

For each size it builds its own lab (name ``<--lab-prefix><size><random>``), then per round runs
``labctl up`` and ``labctl down`` on the lab's inventory through the real CLI (a fresh process
each, as a user runs it; `--json` so no progress is drawn) and times them from process start to
exit. ``--against DIR`` also times the labctl of another checkout (e.g. main, before this
change) on the same lab, interleaved with ours round by round (the order swapped every round),
so both see the same load; each checkout has its own state dir on the hosts (its engine and
bytecode cache stay warm between its rounds). Round 1 of each uploads and compiles its
engine. Every `up` must exit 0 and start one tcpcopy per online host; every
`down` must exit 0. The lab is destroyed at the end, even on failure. Prints a table (median
and each round) and the same figures as JSON (stdout with ``--json``, a file with ``--out``).
Goals (issue 12): `up` <= 5 s / 10 s and `down` <= 3 s / 6 s for 3 / 18 hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labctl.lab import build_lab, destroy_lab
from labctl.lab.inventory import render_lab_inventory
from labctl.lab.spec import LabSpec

ROOT = Path(__file__).resolve().parents[1]
GOALS = {1: {"up": 5.0, "down": 3.0}, 16: {"up": 10.0, "down": 6.0}}


def labctl_argv() -> list[str]:
    exe = Path(sys.executable).parent / "labctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from labctl.cli import main; main()"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    return time.monotonic() - t0, res


def up_down(root: Path, inv: Path, env: dict[str, str], online: int,
            parallel: int | None) -> tuple[float, float]:
    """One `up` and one `down` with the labctl of checkout `root`: their wall times."""
    env = {**env, "PYTHONPATH": str(root)}
    extra = ["--parallel", str(parallel)] if parallel else []
    secs_up, up = timed([*labctl_argv(), "up", str(inv), "--json", *extra], env)
    if up.returncode != 0:
        raise SystemExit(f"up ({root}) failed ({up.returncode}): {up.stderr[-800:]}")
    doc = json.loads(up.stdout)
    started = [s for s in doc["steps"] if s["step"] == "daemon:tcpcopy"
               and s["status"] == "applied"]
    if len(started) != online:
        raise SystemExit(f"up ({root}) started {len(started)} tcpcopy, not {online}")
    secs_down, down = timed([*labctl_argv(), "down", str(inv), "--json", *extra], env)
    if down.returncode != 0:
        raise SystemExit(f"down ({root}) failed ({down.returncode}): {down.stdout[-800:]}")
    return round(secs_up, 2), round(secs_down, 2)


def one_size(online: int, rounds: int, parallel: int, prefix: str,
             against: Path | None) -> dict[str, Any]:
    name = prefix + str(online) + "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(3))
    name = name[:8]
    tmp = Path(tempfile.mkdtemp(prefix=f"fleet-bench-{name}-"))
    env = {**os.environ, "LABCTL_STATE_DIR": str(tmp / "state"),
           "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
    out: dict[str, Any] = {"online_hosts": online, "hosts": online + 2, "up": [], "down": []}
    if against is not None:
        out.update(against=str(against), against_up=[], against_down=[])
    t0 = time.monotonic()
    info = build_lab(LabSpec(name=name, online_hosts=online))
    out["lab_build_s"] = round(time.monotonic() - t0, 2)
    try:
        inv = tmp / "inventory.yaml"
        text = render_lab_inventory(info)
        inv.write_text(text)
        # the other checkout's own state dir on the hosts: each keeps its engine zipapp and
        # bytecode cache there, as a user's next `up` finds them (one dir for both would
        # upload and compile the other's engine at every `up`)
        other = tmp / "inventory-against.yaml"
        other.write_text(re.sub(r"(?m)^(state_dir: .*)$", r"\1-against", text))
        for r in range(rounds):
            runs: list[tuple[str, Path, int | None, Path]] = [("", ROOT, parallel, inv)]
            if against is not None:
                runs.insert(r % 2, ("against_", against, None, other))   # swapped every round
            for key, root, par, inv_of in runs:
                secs_up, secs_down = up_down(root, inv_of, env, online, par)
                out[f"{key}up"].append(secs_up)
                out[f"{key}down"].append(secs_down)
    finally:
        destroy_lab(name)
        shutil.rmtree(tmp, ignore_errors=True)   # state and cache of both checkouts
    for what in ("up", "down", "against_up", "against_down"):
        if what in out:
            out[f"{what}_median_s"] = round(statistics.median(out[what]), 2)
    for what in ("up", "down"):
        goal = GOALS.get(online, {}).get(what)
        out[f"{what}_goal_s"] = goal
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--online", default="1,16", help="lab sizes: online hosts (1..16)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=32)
    ap.add_argument("--lab-prefix", default="fb")
    ap.add_argument("--against", type=Path, help="another labctl checkout to time as well")
    ap.add_argument("--json", action="store_true", help="print only the JSON document")
    ap.add_argument("--out", type=Path, help="also write the JSON document here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("fleet_bench: the local lab needs root", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.online.split(",") if s.strip()]
    doc: dict[str, Any] = {
        "bench": "fleet", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rounds": args.rounds, "parallel": args.parallel, "cpus": os.cpu_count(),
        "load_before": list(os.getloadavg()), "python": platform.python_version(),
        "commit": _commit(), "sizes": []}
    for online in sizes:
        doc["sizes"].append(one_size(online, args.rounds, args.parallel, args.lab_prefix,
                                     args.against))
    doc["load_after"] = list(os.getloadavg())
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
        return 0
    print(f"fleet bench {doc['at']} commit {doc['commit']} ({doc['cpus']} CPUs, load "
          f"{doc['load_before'][0]:.1f} -> {doc['load_after'][0]:.1f}), --parallel "
          f"{args.parallel}, {args.rounds} round(s)")
    print(f"{'hosts':>5} {'what':<13} {'median s':>9} {'goal s':>7}  rounds")
    for size in doc["sizes"]:
        for what in ("up", "down", "against_up", "against_down"):
            if what not in size:
                continue
            goal = size.get(f"{what}_goal_s")
            print(f"{size['hosts']:>5} {what:<13} {size[f'{what}_median_s']:>9.2f} "
                  f"{goal if goal is not None else '-':>7}  "
                  + " ".join(f"{s:.2f}" for s in size[what]))
    print(text)
    return 0


def _commit() -> str:
    res = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return res.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
