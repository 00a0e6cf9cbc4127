"""Transcript tests of the session emulator: events in, expected actions out (no sockets):
the handshake, pacing, flow control and retransmission, close and timeouts. The transcript
and the packet builders are in ``tests/unit/session_transcript.py``."""

from __future__ import annotations

from typing import List

from engine.actions import Drop, RegisterRoute, SendPacket
from engine.packets import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Packet,
    build_tcp_options,
    fill_checksums,
    get_timestamps,
    parse_ipv4_tcp,
    parse_tcp_options,
)
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
    packets,
    rec,
    req,
    run_until_sent,
    sends,
    syn_opts,
)

# ---------------------------------------------------------------- handshake


def test_handshake_rewrites_addresses_and_learns_target_isn() -> None:
    eng = engine()
    reg, syn_act = eng.on_client_packet(cpkt(CISN, 0, SYN, opts=syn_opts()), 0.0)
    assert reg == RegisterRoute(FAKE[0], 40000, TARGET, 8080)
    assert isinstance(syn_act, SendPacket) and syn_act.session == (FAKE[0] << 16) | 40000
    assert syn_act.route == 0
    syn = parse_ipv4_tcp(syn_act.packet)
    assert (syn.ip.src, syn.ip.dst, syn.tcp.sport, syn.tcp.dport) == (FAKE[0], TARGET, 40000, 8080)
    assert syn.tcp.flags == SYN and syn.tcp.seq == CISN
    o = parse_tcp_options(syn.tcp.options)
    assert o.mss == 1460 and o.wscale == 7 and o.timestamps == (111, 0) and not o.sack_ok
    check = syn.copy()
    fill_checksums(check)
    assert check.tcp.checksum == syn.tcp.checksum and check.ip.checksum == syn.ip.checksum
    assert eng.flush(0.0) == () and eng.next_deadline() == 1.0     # the SYN's retransmission
    assert eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK), 0.001) == ()   # pure ACK
    (ack,) = packets(eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, opts=build_tcp_options(
        1460, 7, True, (777, 111))), 0.002))
    assert ack.tcp.flags == ACK and ack.tcp.seq == CISN + 1 and ack.tcp.ack == TISN + 1
    assert get_timestamps(ack.tcp.options) == (111, 777)
    (data,) = packets(eng.on_client_packet(req(CISN + 1, OISN + 1), 0.003))
    assert data.tcp.seq == CISN + 1 and data.tcp.ack == TISN + 1
    assert data.payload == b"GET / HTTP/1.1\r\n\r\n"
    assert eng.counters["conns"] == 1 and eng.counters["requests_sent"] == 1


def test_drops_are_actions_when_recorded() -> None:
    eng = engine(record_drops=True)
    assert eng.on_client_packet(b"\x45" + bytes(10), 0.0) == [Drop("malformed")]
    udp = bytearray(cpkt(CISN, 0, SYN))
    udp[9] = 17
    assert eng.on_client_packet(bytes(udp), 0.0) == [Drop("filtered")]
    assert eng.counters["malformed"] == 1 and eng.counters["filtered"] == 1


def test_faked_handshake_without_timestamps() -> None:
    eng = engine(mss=1400)
    ts_opts = build_tcp_options(timestamps=(5000, 6000))
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, b"GET /x\r\n\r\n", opts=ts_opts),
                         0.0)
    regs, pk = actions(eng)
    assert len(regs) == 1 and len(pk) == 1
    syn = pk[0]
    assert syn.tcp.flags == SYN and syn.tcp.seq == CISN and syn.tcp.window == 65535
    assert parse_tcp_options(syn.tcp.options) == parse_tcp_options(build_tcp_options(1400))
    assert eng.counters["recon_for_no_syn"] == 1
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, opts=build_tcp_options(
        1460, 7, True, (777, 0))), 0.01)
    third, data = sends(eng)
    assert third.tcp.flags == ACK and third.tcp.ack == TISN + 1 and third.tcp.options == b""
    assert data.payload == b"GET /x\r\n\r\n" and data.tcp.seq == CISN + 1
    assert data.tcp.options == b"" and data.tcp.window == 65535   # no TS: never negotiated


def test_only_full_sessions_ignores_syn_less_data() -> None:
    eng = engine(only_full=True)
    eng.on_client_packet(req(CISN + 1, OISN + 1), 0.0)
    assert eng.taken() == [] and eng.counters["clt_no_session"] == 1


# ---------------------------------------------------------------- pacing


def test_pacing_fast_path_releases_next_request_without_timer() -> None:
    eng = engine()
    established(eng)
    r1 = b"GET /1 HTTP/1.1\r\n\r\n"
    r2 = b"GET /2 HTTP/1.1\r\n\r\n"
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.0)
    eng.on_client_packet(req(CISN + 1 + len(r1), OISN + 1 + 300, r2), 1.0001)
    assert [p.payload for p in sends(eng)] == [r1]     # request 2 held: response 1 pending
    eng.on_response_record(rec(TISN + 1, CISN + 1 + len(r1), ACK | PSH, 300), 1.001)
    (p2,) = sends(eng)
    assert p2.payload == r2 and p2.tcp.ack == TISN + 1 + 300
    assert eng.counters["pacing_fast"] == 1 and eng.counters["pacing_timer"] == 0


def test_pacing_falls_back_to_short_timer_when_the_count_is_unusable() -> None:
    eng = engine()
    established(eng)
    r1, r2 = b"A" * 20, b"B" * 20
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.0)
    # request 2's client ACK is *behind* request 1's (a client bug, a rewriting box): no count
    eng.on_client_packet(req(CISN + 21, OISN - 1000, r2), 1.0)
    sends(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 21, ACK, 1448), 1.001)
    eng.flush(1.001)
    assert sends(eng) == []             # delayed ACK: the next request will carry it
    out: List[Packet] = []
    while not out:
        deadline = eng.next_deadline()
        assert deadline is not None and deadline < 1.1
        eng.on_timer(deadline)
        out = sends(eng)
    assert [p.payload for p in out] == [r2]
    assert out[0].tcp.ack == TISN + 1 + 1448
    assert eng.counters["pacing_timer"] == 1


def test_full_segment_without_psh_ends_the_response_on_the_byte_count() -> None:
    eng = engine()
    established(eng)
    r1, r2 = b"A" * 20, b"B" * 20
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.0)
    eng.on_client_packet(req(CISN + 21, OISN + 1 + 1448, r2), 1.0)   # online answered 1448 B
    sends(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 21, ACK, 1448), 1.001)
    (p2,) = sends(eng)
    assert p2.payload == r2 and p2.tcp.ack == TISN + 1 + 1448
    assert eng.counters["pacing_fast"] == 1 and eng.counters["pacing_timer"] == 0


def test_delayed_ack_and_quick_ack_for_bulk_responses() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"GET"), 1.0)
    sends(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 4, ACK | PSH, 100), 1.001)
    eng.flush(1.001)
    assert sends(eng) == []
    (ack,) = run_until_sent(eng, 1.05)
    assert ack.payload == b"" and ack.tcp.ack == TISN + 101
    eng.on_response_record(rec(TISN + 101, CISN + 4, ACK, 1448), 1.1)
    eng.on_response_record(rec(TISN + 1549, CISN + 4, ACK, 1448), 1.1)
    eng.flush(1.1)
    (quick,) = sends(eng)
    assert quick.tcp.ack == TISN + 101 + 2 * 1448


def test_no_wait_sends_every_request_at_once() -> None:
    eng = engine(no_wait=True)
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"A" * 10), 1.0)
    eng.on_client_packet(req(CISN + 11, OISN + 99, b"B" * 10), 1.0)
    assert [p.payload for p in sends(eng)] == [b"A" * 10, b"B" * 10]


def test_keepalive_many_requests_in_order() -> None:
    eng = engine()
    established(eng)
    seq, cack, tseq = CISN + 1, OISN + 1, TISN + 1
    got = []
    for i in range(50):
        body = f"GET /{i} HTTP/1.1\r\n\r\n".encode()
        eng.on_client_packet(req(seq, cack, body), 1.0 + i)
        seq += len(body)
        cack += 100
        got += [p.payload for p in sends(eng)]
        eng.on_response_record(rec(tseq, seq, ACK | PSH, 100), 1.0 + i + 0.001)
        tseq += 100
        eng.flush(1.0 + i + 0.001)
        sends(eng)
    assert len(got) == 50 and got[7] == b"GET /7 HTTP/1.1\r\n\r\n"
    assert eng.counters["requests_sent"] == 50 and eng.counters["pacing_fast"] == 50


def test_server_greeting_holds_first_request() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1 + 50, b"LOGIN"), 1.0)   # client saw 50 B first
    assert sends(eng) == []
    eng.on_response_record(rec(TISN + 1, CISN + 1, ACK | PSH, 50), 1.01)
    assert [p.payload for p in sends(eng)] == [b"LOGIN"]


# ---------------------------------------------------------------- flow control, retransmission


def test_large_post_respects_target_window_and_mtu() -> None:
    eng = engine()
    established(eng, win=4000)
    body = bytes(range(256)) * 40                       # 10240 bytes in one GRO super-frame
    eng.on_client_packet(req(CISN + 1, OISN + 1, body), 1.0)
    first = sends(eng)
    assert [len(p.payload) for p in first] == [1448, 1448]      # 2896 <= 4000 < 4344
    assert all(p.ip.total_length <= 1500 for p in first)
    acked = CISN + 1
    got = b"".join(p.payload for p in first)
    t = 1.0
    while len(got) < len(body):
        acked += len(first[0].payload) if first else 0
        t += 0.001
        eng.on_response_record(rec(TISN + 1, CISN + 1 + len(got), ACK, win=4000), t)
        first = sends(eng)
        got += b"".join(p.payload for p in first)
    assert got == body
    assert eng.counters["sent_content"] == 8


def test_rto_retransmits_unacked_data_with_backoff() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"hello"), 1.0)
    sends(eng)
    eng.on_timer(1.0 + 0.21)
    (r,) = sends(eng)
    assert r.payload == b"hello" and r.tcp.seq == CISN + 1
    eng.on_timer(1.0 + 0.5)
    assert sends(eng) == []                        # backoff: next try after 0.4 s
    eng.on_timer(1.0 + 0.62)
    assert len(sends(eng)) == 1
    eng.on_response_record(rec(TISN + 1, CISN + 6, ACK | PSH, 10), 1.7)
    assert eng.counters["retransmit"] == 2 and eng.counters["retrans_succ"] == 1


def test_three_duplicate_acks_fast_retransmit() -> None:
    eng = engine(no_wait=True)
    established(eng, win=60000)
    for i in range(4):
        eng.on_client_packet(req(CISN + 1 + 100 * i, OISN + 1, b"x" * 100), 1.0)
    assert len(sends(eng)) == 4
    for _ in range(4):          # one new ACK, then three duplicates
        eng.on_response_record(rec(TISN + 1, CISN + 101, ACK, win=60000), 1.01)
    (r,) = sends(eng)
    assert r.tcp.seq == CISN + 101 and len(r.payload) == 100
    assert eng.counters["retransmit"] == 1


def test_zero_window_holds_probes_and_resumes() -> None:
    eng = engine()
    established(eng, win=0)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"data"), 1.0)
    assert sends(eng) == []
    (probe,) = run_until_sent(eng, 1.5)
    assert probe.payload == b"" and probe.tcp.seq == CISN
    eng.on_response_record(rec(TISN + 1, CISN + 1, ACK, win=1000), 2.0)
    assert [p.payload for p in sends(eng)] == [b"data"]


def test_window_scale_applies_to_target_window() -> None:
    eng = engine()
    established(eng, win=1000, wscale=2)
    eng.on_response_record(rec(TISN + 1, CISN + 1, ACK, win=1000), 0.5)   # 4000 bytes
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"z" * 3500), 1.0)
    assert sum(len(p.payload) for p in sends(eng)) == 3500


# ---------------------------------------------------------------- close


def test_client_fin_then_target_fin_ends_with_rst_and_linger() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"GET"), 1.0)
    eng.on_response_record(rec(TISN + 1, CISN + 4, ACK | PSH, 10), 1.01)
    sends(eng)
    eng.on_client_packet(cpkt(CISN + 4, OISN + 11, ACK | FIN), 1.02)
    (fin,) = sends(eng)
    assert fin.tcp.flags & FIN and fin.tcp.seq == CISN + 4
    eng.on_response_record(rec(TISN + 11, CISN + 5, ACK | FIN), 1.03)
    (rst,) = sends(eng)             # no pure ACK of the FIN right before the RST
    assert rst.tcp.flags & RST and rst.tcp.ack == TISN + 12 and rst.tcp.seq == CISN + 5
    assert eng.sessions_active == 0 and eng.counters["sessions_time_wait"] == 1
    eng.on_timer(1.03 + 2.1)
    assert eng.counters["sessions_released"] == 1 and not eng.by_fake
    assert not eng.mapper.used


def test_target_fin_with_unsent_requests_reconnects() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"R1"), 1.0)
    eng.on_client_packet(req(CISN + 3, OISN + 50, b"R2"), 1.0)
    sends(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 3, ACK | FIN, 10, win=1000), 1.01)
    regs, pk = actions(eng)
    flags = [p.tcp.flags for p in pk]
    assert RST | ACK in flags and SYN in flags
    syn = next(p for p in pk if p.tcp.flags == SYN)
    assert syn.tcp.seq == CISN + 2 and len(regs) == 1
    eng.on_response_record(rec(TISN + 99, CISN + 3, SYN | ACK), 1.02)
    assert [p.payload for p in sends(eng)] == [b"", b"R2"]
    assert eng.counters["reconnect"] == 1


def test_target_rst_without_pending_data_ends_session() -> None:
    eng = engine()
    established(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 1, RST | ACK), 1.0)
    assert sends(eng) == []                    # no RST back to a reset connection
    assert eng.counters["resp_rst"] == 1 and eng.sessions_active == 0


def test_client_rst_is_forwarded_and_ends_session() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, RST | ACK), 1.0)
    (rst,) = sends(eng)
    assert rst.tcp.flags & RST and eng.sessions_active == 0


# ---------------------------------------------------------------- timeouts


def test_handshake_timeout_retries_syn_then_gives_up() -> None:
    eng = engine()
    eng.on_client_packet(cpkt(CISN, 0, SYN), 0.0)
    sends(eng)
    eng.on_timer(1.01)
    assert [p.tcp.flags for p in sends(eng)] == [SYN]          # one SYN retry
    eng.on_timer(3.01)
    assert eng.counters["sessions_no_synack"] == 1 and eng.sessions_active == 0
    assert [p.tcp.flags for p in sends(eng)] == [RST | ACK]


def test_idle_session_times_out_with_keepalive_timeout() -> None:
    eng = engine(session_timeout=10, keepalive_timeout=20)
    established(eng)
    t = 0.0
    while eng.sessions_active and t < 100:
        d = eng.next_deadline()
        assert d is not None
        t = d
        eng.on_timer(t)
    assert eng.counters["sessions_timeout"] == 1 and 19 <= t <= 21


def test_stale_ack_during_handshake_resets_target_and_resends_syn() -> None:
    eng = engine()
    eng.on_client_packet(cpkt(CISN, 0, SYN), 0.0)
    sends(eng)
    eng.on_response_record(rec(TISN, 777, ACK), 0.01)
    rst, syn = sends(eng)
    assert rst.tcp.flags & RST and rst.tcp.seq == 777 and syn.tcp.flags == SYN
