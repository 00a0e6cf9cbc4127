"""A client segment lost to the capture (a kernel drop): a keep-alive connection's copy must
not wait behind the hole for good. When the data past the hole acknowledges more of the server's
bytes (a new request: the server answered the one the lost bytes belonged to), the copy is
started again at that request (``clt_gap_resync``); a reordering within a request is waited for."""

from __future__ import annotations

from engine.actions import RegisterRoute
from engine.packets import ACK, PSH, RST, SYN, build_tcp_options
from tests.unit.session_transcript import (
    CISN,
    FAKE,
    OISN,
    TARGET,
    TISN,
    actions,
    cpkt,
    engine,
    established,
    rec,
    req,
    sends,
    syn_opts,
)

HEAD = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
BODY = b"0123456789"
GET_B = b"GET /b HTTP/1.1\r\n\r\n"
GET_C = b"GET /c HTTP/1.1\r\n\r\n"


def test_a_hole_the_client_never_fills_restarts_the_copy_at_the_next_request() -> None:
    eng = engine()
    established(eng)
    seq, cack = CISN + 1, OISN + 1
    eng.on_client_packet(req(seq, cack, HEAD), 1.0)
    assert [p.payload for p in sends(eng)] == [HEAD]
    # BODY (seq + len(HEAD)) is lost to the capture; the server answered (100 bytes), and the
    # client's next request acknowledges them
    seq_b = seq + len(HEAD) + len(BODY)
    eng.on_client_packet(req(seq_b, cack + 100, GET_B), 2.0)
    regs, pk = actions(eng)
    assert eng.counters["clt_gap"] == 1 and eng.counters["clt_gap_resync"] == 1
    # a new copy on a new fake tuple, a faked SYN just before GET /b; the old copy is not
    # reset yet (what it sent before the hole may still be answered)
    (new,) = regs
    assert new.fake_ip == FAKE[0] and new.fake_port != 40000 and not new.forget
    assert [(p.tcp.flags, p.tcp.sport) for p in pk] == [(SYN, new.fake_port)]
    assert pk[0].tcp.seq == seq_b - 1 and eng.counters["recon_for_no_syn"] == 1
    eng.on_response_record(rec(TISN, seq_b, SYN | ACK, opts=build_tcp_options(1460),
                               dport=new.fake_port), 2.01)
    third, data = sends(eng)
    assert third.tcp.flags == ACK and data.payload == GET_B and data.tcp.seq == seq_b
    # the connection goes on: the next request is copied on the new session, no hole
    eng.on_response_record(rec(TISN + 1, seq_b + len(GET_B), ACK | PSH, 100,
                               dport=new.fake_port), 2.02)
    eng.flush(2.02)
    sends(eng)
    eng.on_client_packet(req(seq_b + len(GET_B), cack + 200, GET_C), 3.0)
    assert [p.payload for p in sends(eng)] == [GET_C]
    assert eng.counters["clt_gap"] == 1 and eng.counters["requests_sent"] == 3
    # the old copy, never answered (its request is incomplete), ends by itself: reset on
    # the target, then forgotten by intercept after its linger
    t, reset, forgotten = 3.0, False, False
    while not forgotten:
        deadline = eng.next_deadline()
        assert deadline is not None and deadline < 700, "the old copy never ends"
        t = deadline
        eng.on_timer(t)
        regs, pk = actions(eng)
        reset = reset or any(p.tcp.flags & RST and p.tcp.sport == 40000 for p in pk)
        forgotten = RegisterRoute(FAKE[0], 40000, TARGET, 8080, True) in regs
    assert reset and eng.sessions_active == 1


def test_a_reordering_within_a_request_is_waited_for_not_resynced() -> None:
    eng = engine()
    established(eng)
    seq, cack = CISN + 1, OISN + 1
    eng.on_client_packet(req(seq, cack, HEAD), 1.0)
    sends(eng)
    # the body's second half arrives first (same ACK: the same request), then the first half
    eng.on_client_packet(req(seq + len(HEAD) + 5, cack, BODY[5:]), 1.001)
    assert sends(eng) == [] and eng.counters["clt_gap"] == 1
    eng.on_client_packet(req(seq + len(HEAD), cack, BODY[:5]), 1.002)
    eng.on_response_record(rec(TISN + 1, seq + len(HEAD), ACK, 0), 1.003)   # HEAD acked
    got = [p.payload for p in sends(eng)]
    assert b"".join(got) == BODY and eng.counters["clt_gap_resync"] == 0


def test_a_hole_before_any_data_with_no_ack_to_compare_waits_as_before() -> None:
    # the client's SYN seen, its handshake ACK not (pure ACKs are not captured), its first
    # segment lost: nothing tells a new request from the rest of this one, so no restart
    eng = engine()
    eng.on_client_packet(cpkt(CISN, 0, SYN, opts=syn_opts()), 0.0)
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, opts=build_tcp_options(1460)), 0.01)
    sends(eng)
    eng.on_client_packet(req(CISN + 1 + len(HEAD), OISN + 1, BODY), 0.02)
    assert sends(eng) == [] and eng.counters["clt_gap"] == 1
    assert eng.counters["clt_gap_resync"] == 0 and eng.sessions_active == 1
