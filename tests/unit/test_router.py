"""engine.router: transcripts of registrations, responses and time."""

from __future__ import annotations

import pytest

from engine import packets as P
from engine import protocol as C
from engine.router import Router, classify_frame
from tests.unit.vectors import vector_frames

K1 = (P.ip_aton("10.112.0.1"), 47258, P.ip_aton("10.110.0.20"), 80)
K2 = (P.ip_aton("10.112.0.1"), 47259, P.ip_aton("10.110.0.20"), 80)
REC = b"r" * 64


def test_classify_real_response_frame() -> None:
    frame = vector_frames("c-target-copied-traffic")[1]       # the target's SYN-ACK
    key, flags, rec = classify_frame(frame)
    assert key == K1 and flags == P.SYN | P.ACK and rec == C.make_record(frame, 14)
    with pytest.raises(P.PacketError):
        classify_frame(frame[:30])
    with pytest.raises(P.PacketError):
        classify_frame(frame[:12] + b"\x86\xdd" + frame[14:])


def test_routed_records_are_combined_and_flushed_after_2ms() -> None:
    r = Router()
    r.add_route(K1, 7, 0.0)
    r.route_response(K1, P.ACK, REC, 1.0)
    assert r.frames(1.001) == [] and r.next_flush() == pytest.approx(1.002)
    assert r.frames(1.002) == [(7, C.encode_frame([REC]))]
    for _ in range(16):
        r.route_response(K1, P.ACK, REC, 2.0)
    assert r.frames(2.0) == [(7, C.encode_frame([REC] * 16))]     # full: no waiting
    assert r.counters["resp_routed"] == 17


def test_tuples_differing_only_in_port_do_not_collide() -> None:
    r = Router()
    r.add_route(K1, 1, 0.0)
    r.add_route(K2, 2, 0.0)
    r.route_response(K1, P.ACK, b"a" * 64, 0.0)
    r.route_response(K2, P.ACK, b"b" * 64, 0.0)
    assert sorted(r.frames(0.0, force=True)) == [(1, C.encode_frame([b"a" * 64])),
                                                  (2, C.encode_frame([b"b" * 64]))]


def test_synack_before_registration_is_parked_then_flushed() -> None:
    r = Router()
    r.route_response(K1, P.SYN | P.ACK, REC, 10.0)
    r.route_response(K2, P.ACK, REC, 10.0)            # not SYN/RST: dropped
    assert r.counters["resp_delayed"] == 1 and r.counters["resp_unrouted"] == 1
    r.add_route(K1, 3, 10.5)
    assert r.frames(10.5, force=True) == [(3, C.encode_frame([REC]))]
    assert r.counters["delay_flushed"] == 1 and r.delayed_count == 0


def test_parked_responses_expire_after_30s_and_are_bounded() -> None:
    r = Router(max_delayed=2)
    r.route_response(K1, P.RST, REC, 0.0)
    assert r.expire(29.0) == 0 and r.expire(30.5) == 1
    r.add_route(K1, 1, 31.0)
    assert r.frames(31.0, force=True) == []
    for port in range(3):
        r.route_response((1, port + 1, 2, 80), P.SYN | P.ACK, REC, 40.0)
    assert r.delayed_count == 2 and r.counters["delay_evictions"] == 1


def test_route_table_bounded_with_eviction_counted() -> None:
    r = Router(max_routes=2)
    for port in (1, 2, 3):
        r.add_route((1, port, 2, 80), 1, 0.0)
    assert r.route_count == 2 and r.counters["route_evictions"] == 1
    assert r.lookup((1, 1, 2, 80)) is None and r.lookup((1, 3, 2, 80)) == 1


def test_closed_connection_routes_and_pending_dropped() -> None:
    r = Router()
    r.add_route(K1, 1, 0.0)
    r.add_route(K2, 2, 0.0)
    r.route_response(K1, P.ACK, REC, 0.0)
    assert r.drop_connection(1) == 1
    assert r.frames(1.0) == [] and r.lookup(K1) is None and r.lookup(K2) == 2
    r.route_response(K1, P.ACK, REC, 1.0)
    assert r.counters["resp_unrouted"] == 1


def test_reregistration_moves_route_to_new_connection() -> None:
    r = Router()
    r.add_route(K1, 1, 0.0)
    r.add_route(K1, 2, 0.0)
    assert r.drop_connection(1) == 0 and r.lookup(K1) == 2
    r.del_route(K1)
    assert r.lookup(K1) is None and r.counters["routes_deleted"] == 1


def test_a_route_is_forgotten_only_by_the_connection_that_holds_it() -> None:
    # a CLIENT_DEL of an ended session must not remove the route a newer session on the same
    # tuple registered through another connection (the two messages may cross)
    r = Router()
    r.add_route(K1, 1, 0.0)
    r.add_route(K1, 2, 0.1)                 # reused, registered through connection 2
    r.del_route(K1, 1)                      # the old session's CLIENT_DEL, late, on 1
    assert r.lookup(K1) == 2 and r.counters["routes_deleted"] == 0
    r.del_route(K1, 2)
    assert r.lookup(K1) is None and r.route_count == 0 and r.counters["routes_deleted"] == 1
    r.del_route(K1, 2)                      # again, or never registered: nothing
    assert r.counters["routes_deleted"] == 1
    r.add_route(K1, 3, 0.2)                 # the connection's own list forgot it too
    assert r.drop_connection(2) == 0 and r.lookup(K1) == 3
