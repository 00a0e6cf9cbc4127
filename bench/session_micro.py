"""Micro benchmark of tcpcopy's per-request CPU cost, without sockets or root.

    .venv/bin/python bench/session_micro.py [--mode keepalive|new] [--requests N]
                                            [--connections C] [--rate R] [--profile]

Drives the real daemon code paths of one ``Tcpcopy`` object: captured Ethernet frames go
through the capture reader (``Tcpcopy._make_reader``), response records arrive as channel
bytes through ``sessnet.Conn._on_read`` (frames of up to 16 records), the engine's actions go
to a null sender, and timers run on a virtual clock advanced by ``1 / rate`` per request. The
traffic is generated like the lab's: C concurrent connections, each request one GET segment
(with a TCP timestamp option) answered by one response segment (data + PSH), each packet
its own wake-up unless ``--batched``; in ``new`` mode
every request is a whole connection (SYN, SYN-ACK, ACK, GET, response + FIN, ACK + FIN, ACK).
Prints microseconds per request spent in the daemon's code (traffic generation excluded;
best of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shlex
import sys
import time
from pathlib import Path
from typing import Any, List, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.loop import Loop  # noqa: E402
from engine.options import parse_tcpcopy_args  # noqa: E402
from engine.packets import ACK, FIN, PSH, SYN  # noqa: E402
from engine.protocol import ClientChannel, make_record  # noqa: E402
from engine.session.packets import build_packet, ts_option  # noqa: E402
from engine.sessnet import Conn  # noqa: E402
from engine.stats import Logger  # noqa: E402
from engine.tcpcopy import Tcpcopy  # noqa: E402

CLIENT = 0x0A4E010A          # 10.78.1.10
ONLINE = 0x0A4D010A          # 10.77.1.10
TARGET = 0x0A4D0114          # 10.77.1.20
ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
GET = b"GET /?s1x HTTP/1.1\r\nHost: 10.77.1.10\r\nUser-Agent: labctl-traffic\r\n\r\n"
RESP_LEN = 250
clock = time.process_time


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCapture:
    def __init__(self) -> None:
        self.batch: List[bytes] = []

    def recv_frames(self, limit: int = 64) -> List[bytes]:
        out, self.batch = self.batch[:limit], self.batch[limit:]
        return out


class FakeSock:
    def __init__(self) -> None:
        self.data = b""

    def recv(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out

    def recv_into(self, buf: Any, n: int) -> int:
        out = self.recv(n)
        buf[:len(out)] = out
        return len(out)

    def send(self, data: Any) -> int:
        return len(data)

    def fileno(self) -> int:
        return 1_000_000          # never registered with the loop


class NullSender:
    def __init__(self) -> None:
        self.sent: List[bytes] = []

    def send(self, packet: bytes, dst_ip: int) -> int:
        self.sent.append(packet)
        return 0

    def close(self) -> None:
        pass


def frame(sport: int, seq: int, ack: int, flags: int, payload: bytes, tsval: int) -> bytes:
    opts = ts_option(tsval, 1) if not flags & SYN else b""
    return ETH + build_packet(CLIENT, ONLINE, 1, sport, 80, seq, ack, flags, 502, opts,
                              payload, 0)


def record(fake_port: int, seq: int, ack: int, flags: int, plen: int) -> bytes:
    """A response record (the target's segment to the fake client, payload cut off)."""
    pkt = build_packet(TARGET, CLIENT, 1, 80, fake_port, seq, ack, flags, 509,
                       ts_option(7, 7), bytes(plen), 0)
    return make_record(pkt)


def frames_of(records: List[bytes]) -> bytes:
    out = bytearray()
    for i in range(0, len(records), 16):
        part = records[i:i + 16]
        out += len(part).to_bytes(2, "big") + b"".join(part)
    return bytes(out)


class Rig:
    def __init__(self, flags: Sequence[str] = ()) -> None:
        opts = parse_tcpcopy_args(["-x", "80-10.77.1.20:80", "-s", "10.77.1.30", *flags])
        self.clock = Clock()
        self.tc = Tcpcopy(opts, Logger(None, min_level="crit"))
        self.tc.loop = loop = Loop(clock=self.clock)
        loop.set_alarm(self.tc._on_engine_timer)
        self.tc.intercepts.loop = loop
        self.sender = NullSender()
        self.tc.senders = {0: self.sender}  # type: ignore[dict-item]
        self.cap = FakeCapture()
        self.read = self.tc._make_reader(self.cap)  # type: ignore[arg-type]
        conn = Conn.__new__(Conn)
        conn.owner, conn.server = self.tc.intercepts, self.tc.intercepts.servers[0]
        conn.sock = FakeSock()  # type: ignore[assignment]
        conn.channel = ClientChannel(None, 0.0)
        conn.out = bytearray()
        conn._rbuf = bytearray(262144)
        conn._rview = memoryview(conn._rbuf)
        conn.connected = conn.alive = True
        self.conn = conn
        self.used = 0.0
        self.wakeups = 0
        self.script: List[Tuple[int, Any, float]] = []

    # the scenario is recorded first, then replayed under one CPU-time measurement
    def capture(self, frames: List[bytes]) -> None:
        self.script.append((0, frames, 0.0))

    def responses(self, records: List[bytes]) -> None:
        self.script.append((1, frames_of(records), 0.0))

    def tick(self, dt: float) -> None:
        self.script.append((2, b"", dt))

    def play(self) -> None:
        cap, sock, read, on_read = self.cap, self.conn.sock, self.read, self.conn._on_read
        clk, run_due, sender = self.clock, self.tc.loop.run_due, self.sender
        t0 = clock()
        for op, data, dt in self.script:
            if op == 0:
                cap.batch = data
                while cap.batch:
                    read()
            elif op == 1:
                sock.data = data  # type: ignore[attr-defined]
                on_read()
            else:
                clk.now += dt
                self.wakeups += run_due()
            sender.sent.clear()
        self.used = clock() - t0


def answer(port: int, seq: int, ack: int, segments: int, last: int = ACK | PSH) -> List[bytes]:
    """The target's answer to one request: RESP_LEN bytes in ``segments`` segments (nginx
    sends a static file's header, then its body: 2), the last with the flags ``last``."""
    ack &= 0xFFFFFFFF
    cut = [RESP_LEN * i // segments for i in range(segments + 1)]
    return [record(port, (seq + cut[i]) & 0xFFFFFFFF, ack,
                   last if i == segments - 1 else ACK, cut[i + 1] - cut[i])
            for i in range(segments)]


def keepalive(rig: Rig, conns: int, requests: int, rate: float, batched: bool,
              segments: int = 1) -> int:
    """C connections, handshakes first, then rounds of one request per connection."""
    ports = [40000 + i for i in range(conns)]
    cseq = {p: 1000 * p for p in ports}
    sseq = {p: 5000 * p for p in ports}
    tseq = {p: 9000 * p for p in ports}
    rig.capture([frame(p, cseq[p], 0, SYN, b"", 1) for p in ports])
    isn = dict(cseq)                  # the copy keeps the client's ISN
    synacks = {p: record(p, tseq[p], (isn[p] + 1) & 0xFFFFFFFF, SYN | ACK, 0) for p in ports}
    held = rig.tc.engine.selection is not None    # a selection sends the SYN with the request
    if not held:
        rig.responses(list(synacks.values()))
    for p in ports:
        cseq[p] += 1
        tseq[p] += 1
    rig.capture([frame(p, cseq[p], sseq[p], ACK, b"", 2) for p in ports])
    done, ts = 0, 3
    dt = conns / rate
    while done < requests:
        if batched:       # all connections in lockstep: one capture batch, one channel read
            rig.capture([frame(p, cseq[p], sseq[p], ACK | PSH, GET, ts) for p in ports])
            if held and done == 0:
                rig.responses(list(synacks.values()))
            for p in ports:
                cseq[p] += len(GET)
                sseq[p] += RESP_LEN
            recs = [r for p in ports for r in answer(p, tseq[p], cseq[p], segments)]
            for p in ports:
                tseq[p] += RESP_LEN
            rig.responses(recs)
            rig.tick(dt)
        else:             # spread evenly: every packet is its own wake-up (low rates)
            for p in ports:
                rig.capture([frame(p, cseq[p], sseq[p], ACK | PSH, GET, ts)])
                if held and done == 0:
                    rig.responses([synacks[p]])
                cseq[p] += len(GET)
                sseq[p] += RESP_LEN
                rig.responses(answer(p, tseq[p], cseq[p], segments))
                tseq[p] += RESP_LEN
                rig.tick(dt / conns)
        ts += 1
        done += conns
    return done


def new_conns(rig: Rig, conns: int, requests: int, rate: float, batched: bool,
              segments: int = 1) -> int:
    done, ts, base = 0, 1, 20000
    dt = conns / rate
    while done < requests:
        ports = [base + (done + i) % 30000 for i in range(conns)]
        cseq = {p: 1000 * p for p in ports}
        tseq = {p: 9000 * p for p in ports}
        rig.capture([frame(p, cseq[p], 0, SYN, b"", ts) for p in ports])
        isn = dict(cseq)
        synacks = [record(p, tseq[p], (isn[p] + 1) & 0xFFFFFFFF, SYN | ACK, 0) for p in ports]
        held = rig.tc.engine.selection is not None  # the SYN goes with the request
        if not held:
            rig.responses(synacks)
        frames: List[bytes] = []
        for p in ports:
            cseq[p] += 1
            tseq[p] += 1
            frames.append(frame(p, cseq[p], 777, ACK, b"", ts))
            frames.append(frame(p, cseq[p], 777, ACK | PSH, GET, ts))
            cseq[p] += len(GET)
        rig.capture(frames)
        if held:
            rig.responses(synacks)
        rig.responses([r for p in ports
                       for r in answer(p, tseq[p], cseq[p], segments, ACK | PSH | FIN)])
        for p in ports:
            tseq[p] += RESP_LEN + 1
        rig.capture([frame(p, cseq[p], 777 + RESP_LEN + 1, ACK | FIN, b"", ts) for p in ports])
        rig.responses([record(p, tseq[p], cseq[p] + 1, ACK, 0) for p in ports])
        rig.capture([frame(p, cseq[p] + 1, 777 + RESP_LEN + 1, ACK, b"", ts) for p in ports])
        rig.tick(dt)
        ts += 1
        done += conns
    return done


def run(mode: str, conns: int, requests: int, rate: float, batched: bool,
        flags: Sequence[str] = (), segments: int = 1) -> Tuple[float, Rig]:
    rig = Rig(flags)
    fn = keepalive if mode == "keepalive" else new_conns
    n = fn(rig, conns, requests, rate, batched, segments)
    rig.play()
    return rig.used / n * 1e6, rig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("keepalive", "new"), default="keepalive")
    p.add_argument("--requests", type=int, default=50000)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--batched", action="store_true",
                   help="keep-alive: connections in lockstep (one capture batch per round)")
    p.add_argument("--resp-segments", type=int, default=1, metavar="N",
                   help="segments per response (the lab's nginx sends 2: header, then body)")
    p.add_argument("--flags", default="", metavar="'FLAGS'",
                   help="extra tcpcopy flags, e.g. '--allow-path /api' (a selection's cost)")
    p.add_argument("--json", metavar="FILE", help="also write the figures here as JSON")
    a = p.parse_args()
    flags = shlex.split(a.flags)
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        _, rig = run(a.mode, a.connections, a.requests, a.rate, a.batched, flags,
                     a.resp_segments)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    best = min(run(a.mode, a.connections, a.requests, a.rate, a.batched, flags,
                   a.resp_segments)[0]
               for _ in range(a.repeat))
    _, rig = run(a.mode, a.connections, min(a.requests, 2000), a.rate, a.batched, flags,
                 a.resp_segments)
    rig.tc.engine.selection_report()
    c = rig.tc.counters
    selected = f" requests_selected={c['requests_selected']}" if "requests_selected" in c else ""
    print(f"{a.mode}{' ' + a.flags if a.flags else ''}: {best:.1f} us CPU per request "
          f"(engine paths only, best of {a.repeat}); "
          f"timer wakeups per request {rig.wakeups / c['requests_sent']:.2f}; "
          f"requests_sent={c['requests_sent']} sent={c['sent']} sent_ack={c['sent_ack']} "
          f"pacing_fast={c['pacing_fast']} pacing_timer={c['pacing_timer']}{selected}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "mode": a.mode, "flags": a.flags, "us_per_request": round(best, 2),
            "requests": a.requests, "connections": a.connections,
            "resp_segments": a.resp_segments,
            "counters": {k: v for k, v in c.items() if v}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
