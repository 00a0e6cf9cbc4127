"""Memory soak of tcpcopy's daemon code without a lab (not a test; RELIABILITY.md P2).

    .venv/bin/python bench/session_soak.py [--seconds 600] [--rate 1000] [--connections 20]
        [--max-burst 20] [--every 30] [--flags 'TCPCOPY FLAGS'] [--json FILE]
        [--pypy-default-gc]
    pypy3 bench/session_soak.py ...        (the engine is stdlib-only: runs under PyPy as is)

Drives one ``Tcpcopy`` object (``bench/session_micro.Rig``: the real capture reader, the real
channel reader, a null sender) with traffic like the soak's ``--mode mixed``: ``--connections``
client connections, each a keep-alive burst of 1..``--max-burst`` requests (GET, or POST of 512
or 4,096 bytes, in 1,448-byte segments), each answered by one response segment, then closed
(FIN both ways) and replaced by a new connection on a new port. Time is virtual (advanced by
1 / rate per request), so ``--seconds`` of traffic run as fast as the CPU allows; the daemon's
housekeeping (memory check every 0.5 s) and its stats file (every 0.2 s, ``--stats-file`` in a
temporary directory) run on that clock. Under PyPy it first applies the daemons' GC settings
(``engine.pypygc``; ``--pypy-default-gc``: not). Every ``--every`` virtual seconds it prints
VmRSS, the live sessions and, under PyPy, the GC's figures (``gc.get_stats()``: the memory the
GC uses, in arenas and raw-malloced, its peak, the nursery); ``--json`` writes the series.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.session_micro import CLIENT, RESP_LEN, TARGET, Rig, frame, frames_of  # noqa: E402
from engine.packets import ACK, FIN, PSH, SYN  # noqa: E402
from engine.protocol import make_record  # noqa: E402
from engine.pypygc import ensure_gc_settings, gc_banner  # noqa: E402
from engine.session.packets import build_packet, ts_option  # noqa: E402
from engine.tcpcopy.daemon import HOUSEKEEPING  # noqa: E402
from engine.tcpcopy.setup import current_rss_kb  # noqa: E402

MSS = 1448
BODIES = (0, 512, 4096)


def record(fake_port: int, seq: int, ack: int, flags: int, plen: int) -> bytes:
    """A response record (the target's segment to the fake client, payload cut off); a
    64 KiB window, so that a 4 KiB POST goes in one go."""
    pkt = build_packet(TARGET, CLIENT, 1, 80, fake_port, seq, ack, flags, 65535,
                       ts_option(7, 7), bytes(plen), 0)
    return make_record(pkt)


def request_bytes(n: int) -> bytes:
    size = BODIES[n % len(BODIES)]
    if size == 0:
        return (f"GET /?r{n} HTTP/1.1\r\nHost: 10.77.1.10\r\nUser-Agent: labctl-traffic/1\r\n"
                "\r\n").encode()
    return (f"POST /echo?r{n} HTTP/1.1\r\nHost: 10.77.1.10\r\nContent-Length: {size}\r\n"
            "User-Agent: labctl-traffic/1\r\n\r\n").encode() + b"x" * size


class Conn:
    """One client connection of the generator: its port, sequence numbers, requests left."""

    def __init__(self, port: int, burst: int) -> None:
        self.port, self.left = port, burst
        self.cseq, self.sseq, self.tseq = 1000 * port, 5000 * port, 9000 * port


class Soak:
    def __init__(self, rig: Rig, conns: int, max_burst: int, rate: float, seed: int) -> None:
        self.rig, self.rate, self.max_burst = rig, rate, max_burst
        self.rnd = random.Random(seed)
        self.next_port = 20000
        self.n = 0
        self.sessions_opened = 0
        self.conns: List[Conn] = [self._open() for _ in range(conns)]

    def _deliver(self, frames: List[bytes]) -> None:
        cap, read = self.rig.cap, self.rig.read
        cap.batch = frames
        while cap.batch:
            read()
        self.rig.sender.sent.clear()

    def _respond(self, recs: List[bytes]) -> None:
        sock = self.rig.conn.sock
        sock.data = frames_of(recs)  # type: ignore[attr-defined]
        self.rig.conn._on_read()
        self.rig.sender.sent.clear()

    def _open(self) -> Conn:
        port = self.next_port
        self.next_port = 20000 if port >= 60000 else port + 1
        c = Conn(port, self.rnd.randint(1, self.max_burst))
        self._deliver([frame(port, c.cseq, 0, SYN, b"", 1)])
        self._respond([record(port, c.tseq, (c.cseq + 1) & 0xFFFFFFFF, SYN | ACK, 0)])
        c.cseq += 1
        c.tseq += 1
        self._deliver([frame(port, c.cseq, c.sseq, ACK, b"", 2)])
        self.sessions_opened += 1
        return c

    def _close(self, c: Conn) -> None:
        p = c.port
        self._deliver([frame(p, c.cseq, c.sseq, ACK | FIN, b"", 3)])
        self._respond([record(p, c.tseq, (c.cseq + 1) & 0xFFFFFFFF, ACK | FIN, 0)])
        self._deliver([frame(p, c.cseq + 1, c.sseq + 1, ACK, b"", 3)])

    def one_request(self) -> None:
        i = self.rnd.randrange(len(self.conns))
        c = self.conns[i]
        data = request_bytes(self.n)
        self.n += 1
        frames = []
        for off in range(0, len(data), MSS):
            seg = data[off:off + MSS]
            frames.append(frame(c.port, c.cseq & 0xFFFFFFFF, c.sseq & 0xFFFFFFFF, ACK | PSH,
                                seg, 3))
            c.cseq += len(seg)
        self._deliver(frames)
        self._respond([record(c.port, c.tseq & 0xFFFFFFFF, c.cseq & 0xFFFFFFFF, ACK | PSH,
                              RESP_LEN)])
        c.tseq += RESP_LEN
        c.sseq += RESP_LEN
        c.left -= 1
        if c.left <= 0:
            self._close(c)
            self.conns[i] = self._open()
        clk = self.rig.clock
        clk.now += 1.0 / self.rate
        self.rig.tc.loop.run_due()


def gc_figures() -> Dict[str, Any]:
    if platform.python_implementation() != "PyPy":
        return {"gc_objects": len(gc.get_objects())}
    st = gc.get_stats()
    keys = ("total_gc_memory", "total_arena_memory", "total_rawmalloced_memory", "peak_memory",
            "nursery_size", "total_gc_time")
    return {k: str(getattr(st, k)) for k in keys if hasattr(st, k)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--max-burst", type=int, default=20)
    p.add_argument("--every", type=float, default=30.0)
    p.add_argument("--flags", default="")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--pypy-default-gc", action="store_true",
                   help="leave PyPy's GC as the host sizes it (the daemons set a 4 MB nursery)")
    a = p.parse_args()
    if not a.pypy_default_gc:
        ensure_gc_settings()          # what engine.__main__ does for tcpcopy and intercept
    print(json.dumps({"gc": gc_banner() or platform.python_implementation()}), flush=True)
    with tempfile.TemporaryDirectory(prefix="session-soak-") as tmp:   # the stats file
        rig = Rig(["--stats-file", f"{tmp}/tcpcopy.stats", "--stats-interval", "0.2",
                   *shlex.split(a.flags)])
        tc = rig.tc
        tc.intercepts.servers[0].conns.append(rig.conn)   # registrations go through the channel
        tc.loop.call_later(HOUSEKEEPING, tc._housekeeping)
        tc._stats_tick()
        soak = Soak(rig, a.connections, a.max_burst, a.rate, a.seed)
        t0v, t0 = rig.clock.now, time.monotonic()
        series: List[Dict[str, Any]] = []
        next_print = 0.0
        while True:
            vt = rig.clock.now - t0v
            if vt >= next_print:
                row = {"t": round(vt, 1), "wall": round(time.monotonic() - t0, 1),
                       "rss_mb": round(current_rss_kb() / 1024, 1), "requests": soak.n,
                       "sessions_opened": soak.sessions_opened,
                       "sessions_active": tc.engine.sessions_active, **gc_figures()}
                series.append(row)
                print(json.dumps(row), flush=True)
                next_print += a.every
            if vt >= a.seconds:
                break
            soak.one_request()
        c = tc.counters
        print(json.dumps({"counters": {k: v for k, v in c.items() if v},
                          "runtime": platform.python_implementation()}))
        if a.json:
            Path(a.json).write_text(json.dumps({"series": series, "args": vars(a)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
