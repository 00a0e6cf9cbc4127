"""Transcript tests of the session table: fake-client mapping, sampling, the caps and what
is shed, client retransmissions and reordering, unknown traffic, re-registration, and hostile
input (hypothesis) that must never raise."""

from __future__ import annotations

import struct
from typing import List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actions import RegisterRoute
from engine.packets import (
    ACK,
    RST,
    SYN,
    IPv4Header,
    Packet,
    TCPHeader,
    fill_checksums,
)
from tests.unit.session_transcript import (
    CISN,
    CLIENT,
    CLIENT2,
    FAKE,
    OISN,
    ONLINE,
    TARGET,
    actions,
    cpkt,
    engine,
    established,
    rec,
    req,
    run_until_sent,
    sends,
    syn_opts,
)

# ---------------------------------------------------------------- mapping, sampling, caps


def test_sampling_is_deterministic_per_session() -> None:
    eng = engine(sample_pct=30)
    kept = 0
    for port in range(20000, 20200):
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=port), 0.0)
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=port), 0.0)
    kept = eng.counters["sessions_created"]
    assert 30 <= kept <= 90
    assert eng.counters["sampled_out"] == 2 * (200 - kept)


def test_replicas_get_collision_free_tuples() -> None:
    eng = engine(replicas=3, fake_ips=[FAKE[0]])
    eng.on_client_packet(cpkt(CISN, 0, SYN), 0.0)
    regs, pk = actions(eng)
    tuples = {(r.fake_ip, r.fake_port) for r in regs}
    assert len(tuples) == 3 and len(pk) == 3
    assert {(p.ip.src, p.tcp.sport) for p in pk} == tuples
    # a second client with the same port and the same single fake IP must not collide
    eng.on_client_packet(cpkt(CISN, 0, SYN, src=CLIENT2), 0.0)
    regs2, _ = actions(eng)
    assert len(regs2) == 3 and not tuples & {(r.fake_ip, r.fake_port) for r in regs2}
    assert eng.counters["tuple_remapped"] >= 1


def test_fake_ip_is_sticky_per_client_and_round_robin() -> None:
    eng = engine()
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=1111), 0.0)
    eng.on_client_packet(cpkt(CISN, 0, SYN, src=CLIENT2, sport=1111), 0.0)
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=2222), 0.0)
    regs, _ = actions(eng)
    assert regs == [RegisterRoute(FAKE[0], 1111, TARGET, 8080),
                    RegisterRoute(FAKE[1], 1111, TARGET, 8080),
                    RegisterRoute(FAKE[0], 2222, TARGET, 8080)]


def test_session_table_cap_sheds_and_counts() -> None:
    eng = engine(max_sessions=2)
    for port in (1, 2, 3):
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=port), 0.0)
    assert eng.sessions_active == 2 and eng.counters["table_full"] == 1


def test_session_buffer_cap_sheds_session() -> None:
    eng = engine(session_buffer_bytes=3000)
    established(eng, win=0)
    for i in range(3):
        eng.on_client_packet(req(CISN + 1 + 1400 * i, OISN + 1, b"q" * 1400), 1.0)
    assert eng.counters["buffer_overflow"] == 1 and eng.counters["sessions_shed"] == 1
    assert eng.sessions_active == 0 and eng.buffered_total == 0


def test_a_refused_send_is_retried_and_only_repeated_refusals_shed() -> None:
    """EPERM from a local firewall: the segment is retransmitted like one lost on the wire;
    only a session refused over and over with no progress is shed."""
    eng = engine()
    established(eng)
    (fkey,) = eng.by_fake
    eng.on_client_packet(req(CISN + 1, OISN + 1), 1.0)
    (first,) = [p for p in sends(eng) if p.payload]
    eng.on_send_error(fkey, 1.0)                       # that segment never left
    assert eng.counters["send_retried"] == 1 and eng.sessions_active == 1
    (again,) = [p for p in run_until_sent(eng, 3.0) if p.payload]
    assert again.tcp.seq == first.tcp.seq and eng.counters["retransmit"] == 1
    for _ in range(12):
        eng.on_send_error(fkey, 2.0)
    assert eng.counters["send_errors"] == 13 and eng.counters["sessions_shed"] == 1
    assert eng.sessions_active == 0


def test_client_retransmission_is_skipped() -> None:
    eng = engine(no_wait=True)
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"abc"), 1.0)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"abc"), 1.1)
    assert len(sends(eng)) == 1 and eng.counters["clt_con_retrans"] == 1


def test_out_of_order_client_segments_are_reordered() -> None:
    eng = engine(no_wait=True)
    established(eng)
    eng.on_client_packet(req(CISN + 4, OISN + 1, b"def"), 1.0)
    assert sends(eng) == []
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"abc"), 1.0)
    assert [p.payload for p in sends(eng)] == [b"abc", b"def"]


def test_unknown_and_unrouted_traffic_is_counted() -> None:
    eng = engine()
    eng.on_response_record(rec(1, 2, ACK), 0.0)
    other = Packet(IPv4Header(CLIENT, ONLINE), TCPHeader(1, 81, 1, 0, flags=SYN))
    fill_checksums(other)
    eng.on_client_packet(other.to_bytes(), 0.0)
    assert eng.counters["resp_unknown"] == 1 and eng.counters["filtered"] == 1


def test_live_routes_for_reregistration() -> None:
    eng = engine()
    established(eng)
    assert list(eng.live_routes()) == [(FAKE[0], 40000, TARGET, 8080)]


def test_a_session_gone_for_good_has_its_route_forgotten_after_its_linger() -> None:
    # intercept's route table holds the live sessions only (P2: it grew with every new tuple)
    eng = engine()
    established(eng)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, RST), 1.0)
    regs, _ = actions(eng)
    assert regs == []                   # ended, but lingering: late target packets still route
    forgotten: List[RegisterRoute] = []
    t = 1.0
    while not forgotten:
        deadline = eng.next_deadline()
        assert deadline is not None and deadline < 1.0 + eng.cfg.time_wait + 1
        t = deadline
        eng.on_timer(t)
        forgotten, _ = actions(eng)
    assert t >= 1.0 + eng.cfg.time_wait
    assert forgotten == [RegisterRoute(FAKE[0], 40000, TARGET, 8080, True)]
    assert list(eng.live_routes()) == []
    # the client connects again on the same tuple: its new route is registered (not forgotten)
    eng.on_client_packet(cpkt(CISN + 5000, 0, SYN, opts=syn_opts()), t + 1)
    regs, _ = actions(eng)
    assert regs == [RegisterRoute(FAKE[0], 40000, TARGET, 8080)]


# ---------------------------------------------------------------- hostile input


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.binary(max_size=80))
def test_malformed_input_never_raises(pkt: bytes, record: bytes) -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(pkt, 1.0)
    eng.on_response_record(record, 1.0)
    eng.on_timer(5.0)
    eng.flush(5.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**32 - 1), st.integers(0, 255),
                          st.integers(0, 3000)), max_size=30))
def test_random_event_sequences_never_raise(events: List[Tuple[int, int, int, int]]) -> None:
    eng = engine(session_buffer_bytes=20000)
    t = 0.0
    for kind, num, flags, size in events:
        t += 0.05
        if kind == 0:
            eng.on_client_packet(cpkt(num, num ^ 5, flags, b"x" * size), t)
        elif kind == 1:
            eng.on_response_record(rec(num, num ^ 7, flags, size, win=size), t)
        elif kind == 2:
            eng.on_timer(t + size / 100)
        else:
            eng.flush(t)
    assert eng.buffered_total >= 0
    assert struct.calcsize("!I") == 4


def test_a_refused_syn_is_sent_again_soon_and_its_handshake_clock_restarts() -> None:
    """The local stack refused our SYN (EPERM): it never reached the target, so it goes again
    after rto_min, not after the 1 s SYN timeout, and the handshake timeout starts again (two
    refusals in a row used to end the session as no SYN-ACK, losing a keep-alive connection)."""
    eng = engine()
    eng.on_client_packet(cpkt(CISN, 0, SYN, opts=syn_opts()), 0.0)
    (syn,) = sends(eng)
    (fkey,) = eng.by_fake
    eng.on_send_error(fkey, 0.0)
    deadline = eng.next_deadline()
    assert deadline is not None and deadline <= eng.cfg.rto_min + 1e-9
    eng.on_timer(deadline)
    (again,) = sends(eng)
    assert again.tcp.flags == SYN and again.tcp.seq == syn.tcp.seq
    eng.on_send_error(fkey, 2.9)                # refused again, just before the 3 s timeout
    while (d := eng.next_deadline()) is not None and d < 2.9 + eng.cfg.handshake_timeout:
        eng.on_timer(d)
    assert eng.counters["sessions_no_synack"] == 0 and eng.sessions_active == 1
