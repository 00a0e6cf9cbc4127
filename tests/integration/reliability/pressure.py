"""P1 (a flood of never-finishing sessions) and P3 (the target stalled mid-copy)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from tests.integration.copyrig import Rig, fidelity, log_requests, settle, wait_for
from tests.integration.reliability.measure import (
    Sampler,
    alive,
    copied_uri,
    counters,
    finish,
    generator,
    pid_of,
    quiet_counters,
    within,
)

SYN_FLOOD = r"""
import socket, struct, sys, time
dst, prefix, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
d = socket.inet_aton(dst)
t0 = time.monotonic()
for i in range(n):
    src = socket.inet_aton(prefix + str(11 + i % 9))
    sport = 1024 + i // 9
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0x4000, 64, 6, 0, src, d)
    tcp = struct.pack("!HHIIBBHHH", sport, 80, i * 7919, 0, 0x50, 0x02, 29200, 0, 0)
    s.sendto(ip + tcp, (dst, 0))
    if i % 1000 == 999:                      # pace to ~n/secs packets per second
        ahead = t0 + secs * (i + 1) / n - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(n)
"""


# -- P1 ------------------------------------------------------------------------------------------
@dataclass
class P1Scale:
    """A flood of ``syns`` SYNs over ``secs`` against ``--max-sessions``/``-m`` (MB)."""

    syns: int = 30000
    secs: float = 4.0
    max_sessions: int = 2000
    memory_mb: int = 256
    idle_timeout: int = 120
    hold: bool = False     # the copies go to HOLDER (never answers, holds every connection)
    tcpcopy_args: Tuple[str, ...] = ()     # more tcpcopy flags


#: The issue's full scale: 100,000 concurrent never-finishing sessions offered; the table may
#: hold them all (``--max-sessions``), ``-m 256`` decides (3 kB per session counted: it sheds).
#: The target's nginx closes what exceeds its worker_connections (4,096 in the lab), which
#: would end most sessions: the copies go to HOLDER instead, which keeps every one of them.
P1_FULL = P1Scale(syns=100000, secs=20.0, max_sessions=100000, memory_mb=256, idle_timeout=600,
                  hold=True)

HOLD_PORT = 8080
# On the target: a listener whose accept queue holds every connection the copies open (it never
# accepts, so they stay established and silent): the target side of never-finishing sessions.
HOLDER = r"""
import signal, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(int(sys.argv[3]))
print("listening", flush=True)
signal.pause()
"""


def start_holder(rig: Rig, backlog: int) -> None:
    """HOLDER on the target's HOLD_PORT with an accept queue of ``backlog`` (the namespace's
    somaxconn and SYN backlog raised to match: they go away with the lab's namespace)."""
    rig.ns("target", ["sysctl", "-q", "-w", f"net.core.somaxconn={backlog}",
                      f"net.ipv4.tcp_max_syn_backlog={backlog}"])
    rig.spawn("target", [sys.executable, "-c", HOLDER, rig.target, str(HOLD_PORT),
                         str(backlog)], "holder")
    wait_for(lambda: f":{HOLD_PORT}" in rig.ns("target", ["ss", "-ltnH"]).stdout, 10,
             "the holder listening")


def row_p1(rig: Rig, scale: P1Scale = P1Scale()) -> Dict[str, Any]:
    """The SYN flood; tcpcopy's RSS (base, peak), longest stats gap, sessions and counters, and
    whether it still captures real traffic afterwards."""
    rig.route_pool_via_assistant()
    if scale.hold:
        start_holder(rig, 2 * scale.syns)
    port = HOLD_PORT if scale.hold else 80
    rig.start_intercept(port=port)
    rig.start_tcpcopy(["--max-sessions", str(scale.max_sessions), "-m", str(scale.memory_mb),
                       "-t", str(scale.idle_timeout), *scale.tcpcopy_args], target_port=port)
    proc = rig.procs[-1]
    mon = Sampler(pid_of(rig), rig.dir / "tcpcopy.json")
    base_rss = mon.now()
    t0 = time.monotonic()
    flood = subprocess.run([*rig.lab.ns_argv("client"), sys.executable, "-c", SYN_FLOOD,
                            rig.online, f"10.78.{rig.lab.index}.", str(scale.syns),
                            str(scale.secs)], capture_output=True, text=True,
                           timeout=scale.secs + 120, check=False)
    assert flood.stdout.strip() == str(scale.syns), flood.stderr
    sent_in = time.monotonic() - t0
    seen = scale.syns - max(1000, scale.syns // 30)
    wait_for(lambda: (lambda s: s if s.get("clt_syn", 0) + s.get("kernel_drops", 0)
                      >= seen else None)(counters(rig)),
             20 + scale.secs, "the flood captured or counted as kernel drops")
    c = quiet_counters(rig, "tcpcopy", "clt_syn")
    time.sleep(1.0)                  # one more second of the full table: RSS settles
    st = rig.stats("tcpcopy")
    c = st.get("counters", c)
    peak = mon.stop()
    # still capturing real traffic afterwards (the flood's sessions hold the table until -t,
    # so only a cap-sized table with room would copy: check liveness of capture instead)
    before = c["captured"]
    res = rig.traffic("--requests", "20", "--mode", "new", "--get-paths", "/?p1")
    capturing = within(lambda: counters(rig)["captured"] >= before + 60, 10)
    return {"alive": alive(rig, proc), "syns_sent": scale.syns, "sent_in_s": round(sent_in, 1),
            "rss_base_kb": base_rss, "rss_peak_kb": peak, "ring_kb": mon.ring,
            "samples": mon.samples,
            "max_stats_gap_s": round(mon.max_gap, 2), "sessions_active": st["sessions_active"],
            "counters": c, "traffic_errors": res.get("errors"),
            "capturing_after_s": None if capturing is None else round(capturing, 2)}


# -- P3 ------------------------------------------------------------------------------------------
def stall_target(rig: Rig) -> List[int]:
    """SIGSTOP the target's nginx (master from its pidfile, its workers): the pids stopped."""
    master = int((rig.lab.host("target").dir / "nginx.pid").read_text())
    kids = rig.ns("target", ["ps", "-o", "pid=", "--ppid", str(master)], check=False).stdout
    pids = [master, *(int(p) for p in kids.split())]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume_target(pids: List[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@dataclass
class P3Scale:
    """``rate`` req/s (``mixed``, POST bodies ``post_sizes``) for ``warmup`` s, then the target
    stopped for ``stall`` s while the traffic goes on, then ``after`` s more."""

    stall: float = 4.0
    warmup: float = 2.0
    after: float = 2.0
    # the client bytes tcpcopy holds before it notices the silence (--target-stall-s 0.5, ~0.6 s,
    # more on a loaded box) grow with the rate: ~1.2 MB at 100 req/s (half 64 KiB POSTs) on a
    # quiet box, 2.2 MB at loadavg 13 (+10 % of its ~24 MB); 3 MB at 200 req/s
    rate: float = 50
    connections: int = 4
    post_sizes: str = "0,65536"
    tcpcopy_args: Tuple[str, ...] = ()     # more tcpcopy flags (e.g. -t 5)

    @property
    def requests(self) -> int:
        return int(self.rate * (self.warmup + self.stall + self.after))


#: The issue's full scale: the target silent for 60 s in the middle of a 90 s copy.
P3_FULL = P3Scale(stall=60.0, warmup=15.0, after=15.0, rate=100, connections=4,
                  post_sizes="0,65536")


#: of the 30 requests sent after the return (at 10/s), at least this many copied
AFTER_STALL_COPIED = 27


def row_p3(rig: Rig, scale: P3Scale = P3Scale()) -> Dict[str, Any]:
    """The target stalled mid-copy: tcpcopy's RSS before, during and after the stall, how soon
    new requests are copied after SIGCONT, the fidelity of the whole copy."""
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(list(scale.tcpcopy_args))
    proc = rig.procs[-1]
    mon = Sampler(pid_of(rig), rig.dir / "tcpcopy.json")
    base_rss = mon.now()
    gen = generator(rig, "gen", "mixed", scale.connections, scale.requests, scale.rate,
                    ["--post-sizes", scale.post_sizes])
    time.sleep(scale.warmup)              # traffic flowing and copied before the stall
    stall_at = time.monotonic()
    rss_at_stall = mon.now()
    pids = stall_target(rig)
    try:
        time.sleep(scale.stall)
        stalled = rig.stats("tcpcopy")
        alive_in_stall = alive(rig, proc)
    finally:
        resume_target(pids)
    resumed_at = time.monotonic()
    rss_in_stall = mon.peak_since(stall_at)
    held_in_stall = mon.peak_since(stall_at, held=True)
    # new connections over 3 s from the return: the ones that come before the target's first
    # answer (its first ~0.1 s back) are refused as during the stall (--target-stall-s), the
    # rest must be copied
    after = generator(rig, "after", "new", 1, 30, 10, ["--get-paths", "/?after-stall"])
    first = within(lambda: copied_uri(rig, "/?after-stall") >= 1, 10)
    first_in = None if first is None else time.monotonic() - resumed_at
    finish(rig, after, "after", 30)
    sent_in = time.monotonic() - resumed_at
    res = json.loads((rig.dir / "after.out").read_text().strip().splitlines()[-1])
    every = within(lambda: copied_uri(rig, "/?after-stall") >= AFTER_STALL_COPIED, 15)
    all_in = None if every is None else time.monotonic() - resumed_at
    finish(rig, gen, "gen", 60 + scale.requests / scale.rate)
    truth = log_requests(rig.lab.host("online").access_log)
    copies = settle(rig, sum(truth.values()), timeout=30 + scale.stall)
    rss_end = mon.now()
    peak = mon.stop()
    st = rig.stats("tcpcopy")
    return {"alive": alive(rig, proc), "alive_in_stall": alive_in_stall,
            "rss_base_kb": base_rss, "rss_at_stall_kb": rss_at_stall, "ring_kb": mon.ring,
            "rss_peak_in_stall_kb": rss_in_stall, "held_peak_in_stall_bytes": held_in_stall,
            "rss_peak_kb": peak, "rss_end_kb": rss_end,
            "active_in_stall": stalled.get("sessions_active"),
            "traffic_errors": res.get("errors"), "sent_in_s": round(sent_in, 2),
            "first_copy_in_s": None if first_in is None else round(first_in, 2),
            "most_copied_in_s": None if all_in is None else round(all_in, 2),
            "requests": sum(truth.values()), "fidelity": fidelity(truth, copies),
            "max_stats_gap_s": round(mon.max_gap, 2), "counters": st.get("counters", {})}
