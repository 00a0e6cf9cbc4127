"""A/B CPU comparison of two engine source trees in one lab, back to back (not a test; root).

    sudo .venv/bin/python bench/engine_ab.py --a /tmp/base --b . [--mode keepalive|new]
        [--rate 1000] [--seconds 10] [--rounds 2] [--lab-prefix hd]

The box is shared and its load varies, so the trees alternate (A B A B ...) in the same lab:
per round each tree's intercept + tcpcopy are started fresh, paced traffic is sent, the copies
are counted at the target and the daemons' CPU (utime + stime) is reported per 10,000 copied
requests. A tree is a directory holding an ``engine/`` package (e.g. ``git archive`` output).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import count_tag, cpu_split, wait_quiet  # noqa: E402
from labctl.lab import LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from tests.integration.copyrig import Rig  # noqa: E402

LOSSES = ("kernel_drops", "ring_freezes", "capture_truncated", "malformed", "clt_gap",
          "sessions_shed", "sessions_no_synack", "sessions_timeout", "send_errors", "table_full")


class TreeRig(Rig):
    """A Rig whose daemons import ``engine`` from another source tree."""

    tree = REPO

    def spawn(self, role: str, argv: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.out", "ab")  # noqa: SIM115
        env = dict(self.env, PYTHONPATH=str(self.tree))
        proc = subprocess.Popen([*self.lab.ns_argv(role), *argv], stdout=log, stderr=log,
                                env=env, cwd=str(self.tree))
        log.close()
        self.procs.append(proc)
        return proc


def one(rig: TreeRig, tree: Path, a: argparse.Namespace, tag: str) -> Dict[str, Any]:
    rig.tree = tree
    rig.procs = []
    # the previous round's stats files would make the readiness waits pass at once (traffic
    # then started before the new tcpcopy captured: copies lost in neither daemon's counters)
    for name in ("intercept", "tcpcopy"):
        (rig.dir / f"{name}.json").unlink(missing_ok=True)
    rig.start_intercept()
    rig.start_tcpcopy()
    pids = {"intercept": rig.procs[0].pid, "tcpcopy": rig.procs[1].pid}
    try:
        cpu0 = {k: cpu_split(v) for k, v in pids.items()}
        total = int(a.rate * a.seconds)
        t0 = time.monotonic()
        rig.traffic("--requests", str(total), "--mode", a.mode, "--connections",
                    str(a.connections), "--rate", str(a.rate), "--get-paths", f"/?{tag}",
                    timeout=a.seconds * 4 + 60)
        elapsed = time.monotonic() - t0
        online = count_tag(rig.online_truth(), tag)
        copied = wait_quiet(rig, tag, online)
        cpu1 = {k: cpu_split(v) for k, v in pids.items()}
        counters = rig.stats("tcpcopy").get("counters", {})
    finally:
        for p in reversed(rig.procs):
            rig.stop(p)
    row: Dict[str, Any] = {"tree": str(tree), "online": online, "copied": copied,
                           "rate": round(online / elapsed),
                           "captured_per_copy": round(
                               counters.get("captured", 0) / max(copied, 1), 2),
                           # tcpcopy's loss counters that are not zero (kernel_drops & co.)
                           "losses": {k: v for k, v in counters.items() if v and k in LOSSES}}
    for k in pids:
        u = cpu1[k][0] - cpu0[k][0]
        s = cpu1[k][1] - cpu0[k][1]
        row[k] = round((u + s) / max(copied, 1) * 1e4, 3)
        row[k + "_user"] = round(u / max(copied, 1) * 1e4, 3)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--mode", default="keepalive", choices=("keepalive", "new"))
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--lab-prefix", default="hd")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("engine_ab: needs root", file=sys.stderr)
        return 2
    trees = [Path(a.a).resolve(), Path(a.b).resolve()]
    name = a.lab_prefix + secrets.token_hex(2)
    workdir = Path(tempfile.mkdtemp(prefix="engab-"))
    lab = build_lab(LabSpec(name=name))
    assert_routes_via_lab(lab)
    rig = TreeRig(lab, workdir)
    rows: List[Dict[str, Any]] = []
    try:
        rig.route_pool_via_assistant()
        n = 0
        for _ in range(a.rounds):
            for label, tree in zip("AB", trees):
                n += 1
                row = one(rig, tree, a, f"ab{n}x")
                row["label"] = label
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        rig.close()
        destroy_lab(name)
        shutil.rmtree(workdir, ignore_errors=True)
    for label in "AB":
        rs = [r for r in rows if r["label"] == label]
        tc = sum(r["tcpcopy"] for r in rs) / len(rs)
        ic = sum(r["intercept"] for r in rs) / len(rs)
        fid = min(r["copied"] / max(r["online"], 1) for r in rs)
        print(f"{label}: tcpcopy {tc:.3f} intercept {ic:.3f} s/10k copied "
              f"(mean of {len(rs)}), min fidelity {fid:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
