"""tcpcopy's I/O side of the typed actions: a captured batch in, what reached the sender and
the channel out (no sockets: a scripted sender, intercepts never connected)."""

from __future__ import annotations

import errno
from typing import List, Tuple

import pytest

from engine.loop import Loop
from engine.options import parse_tcpcopy_args
from engine.packets import ACK, PSH, SYN, ip_aton, parse_ipv4_tcp
from engine.session.packets import build_packet
from engine.session.stall import CHECK_INTERVAL, answered
from engine.stats import Logger
from engine.tcpcopy import Tcpcopy

CLIENT, ONLINE = ip_aton("10.78.1.10"), ip_aton("10.77.1.10")
ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"


class ScriptedSender:
    """Records what it is asked to send; fails with ``errors`` (in order), then succeeds."""

    def __init__(self, errors: List[int]) -> None:
        self.errors = list(errors)
        self.sent: List[Tuple[bytes, int]] = []

    def send(self, packet: bytes, dst_ip: int) -> int:
        self.sent.append((packet, dst_ip))
        return self.errors.pop(0) if self.errors else 0

    def close(self) -> None:
        pass


class Capture:
    def __init__(self, frames: List[bytes]) -> None:
        self.frames = frames

    def recv_frames(self, limit: int = 256) -> List[bytes]:
        out, self.frames = self.frames[:limit], self.frames[limit:]
        return out


def daemon(sender: ScriptedSender, lonely: bool = True) -> Tcpcopy:
    opts = parse_tcpcopy_args(["-x", "80-10.77.1.20:80", "-s", "10.77.1.30"]
                              + (["-L"] if lonely else []))
    tc = Tcpcopy(opts, Logger(None, min_level="crit"))
    tc.loop = Loop(clock=lambda: 100.0)
    tc.senders = {0: sender}  # type: ignore[dict-item]
    return tc


def frame(sport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    return ETH + build_packet(CLIENT, ONLINE, 1, sport, 80, seq, 0, flags, 502, b"", payload, 0)


@pytest.mark.parametrize("lonely", [True, False])
def test_batch_of_syns_sends_in_order_and_counts_unregistered_routes(lonely: bool) -> None:
    sender = ScriptedSender([])
    tc = daemon(sender, lonely)
    tc._make_reader(Capture([frame(40000, 10, SYN), frame(40001, 20, SYN)]))()  # type: ignore
    assert [parse_ipv4_tcp(p).tcp.sport for p, _ in sender.sent] == [40000, 40001]
    assert all(parse_ipv4_tcp(p).tcp.flags == SYN for p, _ in sender.sent)
    assert {dst for _, dst in sender.sent} == {ip_aton("10.77.1.20")}
    # no intercept is connected: each RegisterRoute action is counted, never lost silently;
    # with -L the first failed registration puts the table on hold (engine.session.hold):
    # both sessions are held, to be registered again and resumed once an intercept is back
    held, refused = (2, 0) if lonely else (0, 2)
    assert tc.counters["sessions_held"] == held
    assert tc.counters["sessions_no_intercept"] == refused
    assert tc.engine.sessions_active == 2
    assert tc.loop.alarm_at == 101.0            # the SYNs' retransmission timer


def test_a_refused_send_is_counted_retried_later_and_the_batch_goes_on() -> None:
    sender = ScriptedSender([errno.EPERM])
    tc = daemon(sender)
    frames = [frame(40000, 10, SYN), frame(40001, 20, SYN),
              frame(40000, 11, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n")]
    tc._make_reader(Capture(frames))()  # type: ignore
    assert len(sender.sent) == 2     # SYN (refused), SYN; the GET waits for a SYN-ACK
    assert tc.counters["send_errors"] == 1 and tc.counters["send_retried"] == 1
    assert tc.counters["sessions_shed"] == 0 and tc.engine.sessions_active == 2


class FakeChannel:
    def __init__(self, events: List[object]) -> None:
        self.events = events
        self.routes: List[Tuple[int, ...]] = []

    def register(self, *route: int) -> None:
        self.routes.append(route)


class FakeConn:
    """A ready channel connection: registrations are queued, ``flush`` sends them."""

    def __init__(self, events: List[object]) -> None:
        self.ready, self.events = True, events
        self.channel = FakeChannel(events)

    def flush(self) -> None:
        self.events.append(("flush", [r[1] for r in self.channel.routes]))
        self.channel.routes = []


def test_a_batch_of_new_sessions_is_registered_in_one_send_per_connection_before_its_syns(
) -> None:
    events: List[object] = []

    class OrderedSender(ScriptedSender):
        def send(self, packet: bytes, dst_ip: int) -> int:
            events.append(("send", parse_ipv4_tcp(packet).tcp.flags))
            return super().send(packet, dst_ip)

    tc = daemon(OrderedSender([]), lonely=False)
    conns = [FakeConn(events), FakeConn(events)]
    tc.intercepts.servers[0].conns = conns  # type: ignore[assignment]
    tc._make_reader(Capture([frame(40000 + i, 10, SYN) for i in range(3)]))()  # type: ignore
    flushes = [e for e in events if e[0] == "flush"]  # type: ignore[index]
    assert len(flushes) == 2                      # one send per connection, not per session
    assert events.index(flushes[-1]) < events.index(("send", SYN))   # registered first
    ports = sorted(p for _, batch in flushes for p in batch)  # type: ignore[misc]
    assert len(ports) == 3 and len(set(ports)) == 3          # every session, once
    assert tc.counters["sessions_no_intercept"] == 0 and tc.counters["sessions_held"] == 0
    assert [e for e in events if e[0] == "send"] == [("send", SYN)] * 3  # type: ignore[index]


def test_the_stall_check_is_parked_while_nothing_is_asked_and_armed_by_the_next_ask() -> None:
    """An idle copier does not wake up every CHECK_INTERVAL for nothing; the first request
    that goes out to the target arms the check again (one timer, never two)."""
    clock = [100.0]
    tc = daemon(ScriptedSender([]))
    tc.loop = Loop(clock=lambda: clock[0])
    tc.stall_timer = tc.loop.call_later(CHECK_INTERVAL, tc._check_stall)    # as run() does

    def armed() -> int:
        return sum(1 for _, _, h in tc.loop._timers
                   if h.callback == tc._check_stall and not h.cancelled)

    clock[0] += CHECK_INTERVAL
    assert tc.loop.run_due() == 1
    assert tc.stall_timer is None and armed() == 0          # idle: parked
    tc.engine.asked(clock[0])                                # a request went to the target
    tc._after_batch(clock[0])
    tc._after_batch(clock[0])
    assert tc.stall_timer is not None and armed() == 1
    clock[0] += CHECK_INTERVAL
    tc.loop.run_due()
    assert armed() == 1                                      # unanswered: watched
    answered(tc.engine, clock[0])
    clock[0] += CHECK_INTERVAL
    tc.loop.run_due()
    assert tc.stall_timer is None and armed() == 0
    off = Tcpcopy(parse_tcpcopy_args(["-x", "80-10.77.1.20:80", "-s", "10.77.1.30", "-L",
                                      "--target-stall-s", "0"]), Logger(None, min_level="crit"))
    off.loop = Loop(clock=lambda: 100.0)
    off.engine.asked(100.0)
    off._after_batch(100.0)
    assert off.stall_timer is None                           # --target-stall-s 0: never
