"""Profile the real daemons under steady paced load (not a test; root; py-spy + strace).

    sudo .venv/bin/python bench/engine_profile.py [--mode keepalive|new] [--rate 1000]
        [--seconds 20] [--out DIR] [--lab-prefix hd] [--no-pyspy] [--no-strace]

Builds its own lab (``<prefix>NNNN``), starts intercept + tcpcopy (3-server), sends paced
traffic in the background and meanwhile records ``py-spy record --format raw`` (collapsed
stacks, ``DIR/<tool>.folded``), ``strace -c -f`` (``DIR/<tool>.strace``) and optionally
``perf record`` (``DIR/<tool>.perf``) of both daemons,
then prints CPU per 10,000 requests and syscalls per request. The lab is always destroyed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import count_tag, cpu_split, wait_quiet  # noqa: E402
from labctl.lab import LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from tests.integration.copyrig import Rig  # noqa: E402

PER_REQUEST = {"captured", "clt_packs", "clt_cont", "resp", "resp_cont", "sent", "sent_ack",
               "sent_content", "pacing_fast", "pacing_timer", "requests_sent", "frames_sent",
               "records_sent", "resp_routed"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="keepalive", choices=("keepalive", "new"))
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--out", default="/tmp/engine_profile")
    p.add_argument("--lab-prefix", default="hd")
    p.add_argument("--no-pyspy", action="store_true")
    p.add_argument("--no-strace", action="store_true")
    p.add_argument("--perf", action="store_true", help="also perf record (DIR/<tool>.perf)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("engine_profile: needs root", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = a.lab_prefix + secrets.token_hex(2)
    workdir = Path(tempfile.mkdtemp(prefix="engprof-"))
    lab = build_lab(LabSpec(name=name))
    assert_routes_via_lab(lab)
    rig = Rig(lab, workdir)
    tools: List[subprocess.Popen] = []
    try:
        rig.route_pool_via_assistant()
        rig.start_intercept()
        rig.start_tcpcopy()
        pids: Dict[str, int] = {"intercept": rig.procs[0].pid, "tcpcopy": rig.procs[1].pid}
        total = int(a.rate * a.seconds)
        tag = "prof"
        res: Dict[str, object] = {}

        def load() -> None:
            res.update(rig.traffic("--requests", str(total), "--mode", a.mode, "--connections",
                                   str(a.connections), "--rate", str(a.rate), "--get-paths",
                                   f"/?{tag}", timeout=a.seconds * 4 + 60))

        th = threading.Thread(target=load)
        cpu0 = {k: cpu_split(v) for k, v in pids.items()}
        th.start()
        time.sleep(2.0)
        dur = max(1, int(a.seconds - 5))
        for k, pid in pids.items():
            if not a.no_pyspy:
                tools.append(subprocess.Popen(
                    [str(REPO / ".venv/bin/py-spy"), "record", "--gil", "--format", "raw",
                     "-r", "100", "-d", str(dur), "-o", str(out / f"{k}.folded"),
                     "--pid", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if not a.no_strace:
                tools.append(subprocess.Popen(
                    ["timeout", "-s", "INT", str(dur), "strace", "-c", "-f", "-o",
                     str(out / f"{k}.strace"), "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if a.perf:
                tools.append(subprocess.Popen(
                    ["perf", "record", "-F", "997", "-p", str(pid), "-o",
                     str(out / f"{k}.perf"), "--", "sleep", str(dur)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t_start = time.monotonic()
        for t in tools:
            t.wait(dur + 30)
        window = time.monotonic() - t_start
        th.join(a.seconds * 4 + 60)
        online = count_tag(rig.online_truth(), tag)
        copied = wait_quiet(rig, tag, online)
        cpu1 = {k: cpu_split(v) for k, v in pids.items()}
        for k in pids:
            c = rig.stats(k).get("counters", {})
            print(k, "counters per copied request:", {
                n: round(v / max(copied, 1), 2) for n, v in sorted(c.items())
                if v and n in PER_REQUEST})
        print(f"mode={a.mode} rate={a.rate} online={online} copied={copied} "
              f"profiled window={window:.1f}s")
        for k in pids:
            u = cpu1[k][0] - cpu0[k][0]
            s = cpu1[k][1] - cpu0[k][1]
            print(f"{k}: user {u:.2f}s sys {s:.2f}s = {(u + s) / max(copied, 1) * 1e4:.2f} "
                  f"s/10k copied")
            f = out / f"{k}.strace"
            if f.exists():
                print(f.read_text())
    finally:
        for t in tools:
            if t.poll() is None:
                t.kill()
        rig.close()
        destroy_lab(name)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
