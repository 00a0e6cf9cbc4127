"""The session emulator under test as a transcript: events in, typed actions kept in order
until the test reads them (``sends``/``actions``), and the packet builders the session tests
share (no sockets)."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from engine.actions import Action, RegisterRoute, SendPacket
from engine.packets import (
    ACK,
    PSH,
    SYN,
    IPv4Header,
    Packet,
    TCPHeader,
    build_tcp_options,
    fill_checksums,
    ip_aton,
    parse_ipv4_tcp,
)
from engine.session.config import Route, SessionConfig
from engine.session.table import Actions, Engine, Shed

CLIENT = ip_aton("10.78.1.10")
CLIENT2 = ip_aton("10.78.1.11")
ONLINE = ip_aton("10.77.1.10")
TARGET = ip_aton("10.77.1.20")
FAKE = [ip_aton("10.79.1.1"), ip_aton("10.79.1.2")]
CISN = 1000
TISN = 5_000_000
OISN = 9_000_000          # the online server's ISN as the client saw it


class Transcript(Engine):
    """An Engine that also keeps every action its events returned, until ``taken()``."""

    def __init__(self, cfg: SessionConfig, seed: int = 0) -> None:
        super().__init__(cfg, seed)
        self.seen: List[Action] = []

    def _keep(self, acts: Actions) -> Actions:
        self.seen += acts
        return acts

    def taken(self) -> List[Action]:
        out, self.seen = self.seen, []
        return out

    def on_client_packet(self, data: bytes, now: float) -> Actions:
        return self._keep(super().on_client_packet(data, now))

    def on_response_record(self, rec: bytes, now: float) -> Actions:
        return self._keep(super().on_response_record(rec, now))

    def on_response_records(self, recs: Sequence[bytes], now: float) -> Actions:
        return self._keep(super().on_response_records(recs, now))

    def flush(self, now: float) -> Actions:
        return self._keep(super().flush(now))

    def on_timer(self, now: float) -> Actions:
        return self._keep(super().on_timer(now))

    def on_send_error(self, fkey: int, now: float) -> Actions:
        return self._keep(super().on_send_error(fkey, now))

    def check_memory(self, rss: int, now: float) -> Shed:
        shed = super().check_memory(rss, now)
        self._keep(shed.actions)
        return shed

    def shutdown(self, now: float) -> Actions:
        return self._keep(super().shutdown(now))


def engine(**kw: object) -> Transcript:
    routes = [Route(ONLINE, 80, TARGET, 8080)]
    kw.setdefault("fake_ips", list(FAKE))
    return Transcript(SessionConfig(routes, **kw))  # type: ignore[arg-type]


def cpkt(seq: int, ack: int, flags: int, payload: bytes = b"", *, src: int = CLIENT,
         sport: int = 40000, win: int = 502, opts: bytes = b"") -> bytes:
    p = Packet(IPv4Header(src, ONLINE, ident=7),
               TCPHeader(sport, 80, seq, ack, flags=flags, window=win, options=opts), payload)
    fill_checksums(p)
    return p.to_bytes()


def rec(seq: int, ack: int, flags: int, plen: int = 0, *, dst: int = FAKE[0],
        dport: int = 40000, win: int = 1000, opts: bytes = b"", src: int = TARGET) -> bytes:
    tcp = TCPHeader(8080, dport, seq, ack, flags=flags, window=win, options=opts,
                    doff=5 + len(opts) // 4).pack()
    ip = IPv4Header(src, dst, total_length=20 + len(tcp) + plen).pack()
    return (ip + tcp + b"\x00" * 24)[:64]


def packets(acts: Actions) -> List[Packet]:
    """The packets of the SendPacket actions, parsed."""
    return [parse_ipv4_tcp(a.packet) for a in acts if isinstance(a, SendPacket)]


def sends(eng: Transcript) -> List[Packet]:
    return packets(eng.taken())


def actions(eng: Transcript) -> Tuple[List[RegisterRoute], List[Packet]]:
    acts = eng.taken()
    return [a for a in acts if isinstance(a, RegisterRoute)], packets(acts)


def syn_opts() -> bytes:
    return build_tcp_options(1460, 7, True, (111, 0))


def established(eng: Engine, *, ts: bool = True, win: int = 1000, wscale: Optional[int] = None,
                now: float = 0.0) -> None:
    """Client SYN, target SYN-ACK, client third ACK; actions consumed."""
    eng.on_client_packet(cpkt(CISN, 0, SYN, opts=syn_opts() if ts else b""), now)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK), now + 0.001)
    opts = build_tcp_options(1460, wscale, True, (777, 111) if ts else None)
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, win=win, opts=opts), now + 0.002)
    eng.taken()


def run_until_sent(eng: Engine, limit: float) -> List[Packet]:
    """Fire timers in order until something is sent (or ``limit`` passes)."""
    while True:
        deadline = eng.next_deadline()
        assert deadline is not None and deadline <= limit
        eng.on_timer(deadline)
        out = sends(eng)
        if out:
            return out


def req(seq: int, cack: int, body: bytes = b"GET / HTTP/1.1\r\n\r\n") -> bytes:
    return cpkt(seq, cack, ACK | PSH, body)
