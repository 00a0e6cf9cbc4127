"""Sessions held through an intercept outage (`engine.session.hold`, tcpcopy -L): started or
live while no intercept is connected, kept past the handshake and silence timeouts (bounded by
--hold-timeout, --max-sessions and -m), and resumed when an intercept is back."""

from __future__ import annotations

from typing import List

from engine.options import parse_tcpcopy_args
from engine.packets import ACK, FIN, PSH, RST, SYN, Packet
from engine.session import INF
from engine.stats import stat_lines
from engine.tcpcopy.setup import session_config
from tests.unit.session_transcript import (
    CISN,
    OISN,
    TISN,
    Transcript,
    actions,
    cpkt,
    engine,
    established,
    packets,
    rec,
    sends,
)

REQ = b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n"


def run_to(eng: Transcript, until: float) -> List[Packet]:
    """Fire every deadline up to ``until`` in order (as the daemon's alarm would); returns
    what was sent. Each deadline must lie ahead of the previous one: no busy loop."""
    last = -1.0
    while True:
        when = eng.next_deadline()
        if when is None or when > until:
            return sends(eng)
        assert when > last, f"deadline {when} does not move on from {last}"
        last = when
        eng.on_timer(when)


def client_connection(eng: Transcript, now: float, sport: int = 40000) -> None:
    """A whole short client connection, as the capture sees it within a millisecond."""
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=sport), now)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, REQ, sport=sport), now + 0.001)
    eng.on_client_packet(cpkt(CISN + 1 + len(REQ), OISN + 200, ACK | FIN, sport=sport),
                         now + 0.002)


def test_a_session_started_in_an_outage_is_held_then_resumed_and_copied() -> None:
    eng = engine(hold_timeout=30.0)
    assert eng.channel_down(0.0) == 0            # nothing live yet
    client_connection(eng, 1.0)
    out = sends(eng)
    assert [p.tcp.flags for p in out] == [SYN]   # the SYN goes out; its SYN-ACK is lost
    assert eng.counters["sessions_held"] == 1 and eng.counters["sessions_no_intercept"] == 0
    # 6 s of outage: twice the handshake timeout, past -t 5; only SYN retransmissions
    out = run_to(eng, 7.0)
    assert out and all(p.tcp.flags == SYN for p in out)
    assert eng.sessions_active == 1
    assert eng.counters["sessions_no_synack"] == eng.counters["sessions_timeout"] == 0
    resumed, acts = eng.channel_up(7.0)
    assert resumed == 1 and eng.counters["sessions_resumed"] == 1
    syn = packets(acts)
    assert [p.tcp.flags for p in syn] == [SYN] and syn[0].tcp.seq == CISN   # a fresh SYN
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK), 7.01)
    eng.flush(7.01)
    out = sends(eng)
    assert any(p.payload == REQ for p in out)    # the held request is copied
    assert eng.counters["requests_sent"] == 1 and eng.counters["conns"] == 1


def test_a_session_established_before_the_outage_is_not_timed_out_and_retransmits() -> None:
    eng = engine(hold_timeout=30.0, session_timeout=5.0)
    established(eng)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, REQ), 0.1)
    assert [p.payload for p in sends(eng)] == [REQ]
    assert eng.channel_down(0.2) == 1            # the request's ACK will be lost
    assert eng.counters["sessions_held"] == 1
    run_to(eng, 8.0)                             # past -t 5 without a word from the target
    assert eng.sessions_active == 1 and eng.counters["sessions_timeout"] == 0
    resumed, acts = eng.channel_up(8.0)
    assert resumed == 1
    again = [p for p in packets(acts) if p.payload == REQ]
    assert len(again) == 1                       # retransmitted at once, not after the RTO
    assert eng.next_deadline() is not None and eng.next_deadline() > 8.0


def test_a_hold_is_bounded_by_the_hold_timeout() -> None:
    eng = engine(hold_timeout=4.0)
    eng.channel_down(0.0)
    client_connection(eng, 1.0)
    sends(eng)
    out = run_to(eng, 4.9)
    assert eng.sessions_active == 1 and not any(p.tcp.flags & RST for p in out)
    out = run_to(eng, 5.1)                       # held since 1.0 (its SYN), for 4 s
    assert eng.counters["sessions_hold_expired"] == 1 and eng.sessions_active == 0
    assert any(p.tcp.flags & RST for p in out)   # the target's half-open socket is freed
    assert eng.channel_up(6.0) == (0, ())


def test_a_hold_is_bounded_by_max_sessions() -> None:
    eng = engine(hold_timeout=30.0, max_sessions=3)
    eng.channel_down(0.0)
    for i in range(5):
        client_connection(eng, 0.1 * i, sport=41000 + i)
    assert eng.sessions_active == 3
    # the two left out: refused at their SYN and again at their request (a session caught
    # mid-way would start there)
    assert eng.counters["sessions_held"] == 3 and eng.counters["table_full"] == 2 * 2


def test_without_hold_timeout_new_sessions_are_refused_in_an_outage() -> None:
    eng = engine()                               # hold_timeout 0: tcpcopy without -L
    eng.channel_down(0.0)
    assert eng.down_since == INF
    client_connection(eng, 1.0)
    assert sends(eng) == [] and eng.sessions_active == 0
    # refused at the SYN and again at the request (a session caught mid-way would start there)
    assert eng.counters["sessions_no_intercept"] == 2 and eng.counters["sessions_held"] == 0
    assert eng.channel_up(2.0) == (0, ())
    client_connection(eng, 3.0, sport=40001)
    assert [p.tcp.flags for p in sends(eng)] == [SYN]


def test_a_repeated_loss_counts_once_and_a_second_outage_holds_again() -> None:
    eng = engine(hold_timeout=30.0)
    client_connection(eng, 0.0)
    sends(eng)
    assert eng.channel_down(0.1) == 1
    assert eng.channel_down(0.2) == 0            # already down: nothing new
    assert eng.channel_up(1.0)[0] == 1
    assert eng.channel_down(2.0) == 1
    assert eng.counters["sessions_held"] == 2 and eng.counters["sessions_resumed"] == 1
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK), 2.5)   # a late SYN-ACK still helps
    eng.flush(2.5)
    assert any(p.payload == REQ for p in sends(eng))


def test_the_periodic_log_names_the_outage_counters() -> None:
    eng = engine(hold_timeout=30.0)
    client_connection(eng, 0.0)
    eng.channel_down(0.1)
    eng.channel_up(1.0)
    eng.counters["channel_reconnects"] += 1
    line = next(x for x in stat_lines(eng.counters, eng.sessions_active)
                if x.startswith("intercept outages:"))
    assert line == "intercept outages: reconnects:1,held:1,resumed:1,hold expired:0"


def test_the_daemon_holds_only_with_lonely() -> None:
    """`--hold-timeout` reaches the table only with -L: without it tcpcopy exits when the
    last intercept is lost, and a session is never held."""
    base = ["-x", "80-10.77.1.20:80", "-s", "10.77.1.30"]
    assert session_config(parse_tcpcopy_args([*base, "-L"])).hold_timeout == 30.0
    assert session_config(parse_tcpcopy_args([*base, "-L", "--hold-timeout", "0"])
                          ).hold_timeout == 0.0
    assert session_config(parse_tcpcopy_args(base)).hold_timeout == 0.0


def test_a_client_port_reused_during_an_outage_does_not_cost_the_held_copy() -> None:
    """A client that opens connections fast wraps its ports in seconds (the lab's client:
    ~715 connections): during an outage the held copy of a port's last connection still holds
    its request when the port's next connection starts. The held copy keeps its fake tuple and
    sends the request once an intercept is back; the new connection gets a copy of its own."""
    eng = engine(hold_timeout=30.0)
    eng.channel_down(0.0)
    client_connection(eng, 1.0)                  # held: its SYN-ACK is lost
    sends(eng)
    eng.on_client_packet(cpkt(CISN + 5000, 0, SYN), 2.0)     # the same client port, again
    regs, _ = actions(eng)
    (new,) = [r for r in regs if not r.forget]
    assert new.fake_port != 40000                 # a fake tuple of its own
    assert eng.counters["sessions_drained"] == 1 and eng.counters["sessions_obsolete"] == 0
    assert eng.sessions_active == 2
    resumed, _ = eng.channel_up(3.0)
    assert resumed == 2
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK), 3.01)   # to the held copy
    eng.flush(3.01)
    assert any(p.payload == REQ and p.tcp.sport == 40000 for p in sends(eng))
