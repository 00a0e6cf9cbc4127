"""Pacing on response size: the next request (or the client's FIN) waits until the target has
sent as many response bytes as the client had received online before sending it."""

from __future__ import annotations

from typing import List

from engine.packets import ACK, FIN, PSH, Packet, build_tcp_options
from engine.session.table import Engine
from tests.unit.session_transcript import (
    CISN,
    OISN,
    TISN,
    cpkt,
    engine,
    established,
    rec,
    req,
    sends,
)

HEAD = 253                  # nginx writes the response header in its own (short, PSH) segment
BODY = 20 * 1448


def body(eng: Engine, start: float, first: int, last: int, cack: int) -> List[Packet]:
    """Deliver body bytes [first, last) in full segments (no PSH); the data the engine sent."""
    out: List[Packet] = []
    for off in range(first, last, 1448):
        n = min(1448, last - off)
        eng.on_response_record(rec(TISN + 1 + HEAD + off, cack, ACK, n), start + off * 1e-7)
        eng.flush(start + off * 1e-7)
        out += [p for p in sends(eng) if p.payload or p.tcp.flags & FIN]
    return out


def test_next_request_waits_for_the_whole_big_response() -> None:
    eng = engine()
    established(eng)
    r1, r2 = b"GET /big HTTP/1.1\r\n\r\n"[:15], b"GET / HTTP/1.1\r\n\r\n"
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.0)
    # the client got header + body online before it sent request 2
    eng.on_client_packet(req(CISN + 16, OISN + 1 + HEAD + BODY, r2), 1.0001)
    assert [p.payload for p in sends(eng)] == [r1]
    eng.on_response_record(rec(TISN + 1, CISN + 16, ACK | PSH, HEAD), 1.001)
    eng.flush(1.001)
    assert [p for p in sends(eng) if p.payload] == []      # the header alone is not the end
    assert body(eng, 1.002, 0, BODY - 1448, CISN + 16) == []     # one segment still owed
    (p2,) = body(eng, 1.01, BODY - 1448, BODY, CISN + 16)
    assert p2.payload == r2 and p2.tcp.ack == TISN + 1 + HEAD + BODY
    assert eng.counters["pacing_fast"] == 1 and eng.counters["pacing_lag"] == 0


def test_client_fin_waits_for_the_whole_response() -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"GET /big"), 1.0)
    eng.on_response_record(rec(TISN + 1, CISN + 9, ACK | PSH, HEAD), 1.001)
    eng.on_client_packet(cpkt(CISN + 9, OISN + 1 + HEAD + BODY, ACK | FIN), 1.002)
    eng.flush(1.002)
    assert not [p for p in sends(eng) if p.tcp.flags & FIN]
    assert body(eng, 1.003, 0, BODY - 1, CISN + 9) == []
    (fin,) = body(eng, 1.01, BODY - 1, BODY, CISN + 9)
    assert fin.tcp.flags & FIN and fin.tcp.seq == CISN + 9


def test_shorter_target_response_ends_after_quiet_period() -> None:
    eng = engine(eor_lag=0.2)
    established(eng)
    r1, r2 = b"A" * 20, b"B" * 20
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.0)
    eng.on_client_packet(req(CISN + 21, OISN + 5000, r2), 1.0)   # online answered 4999 B
    sends(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 21, ACK | PSH, 300), 1.001)  # target: 300 B
    eng.flush(1.001)
    assert [p for p in sends(eng) if p.payload] == []
    out: List[Packet] = []
    last = 1.001
    while not out:
        deadline = eng.next_deadline()
        assert deadline is not None and deadline <= 1.001 + 0.2 + 1e-9
        last = deadline
        eng.on_timer(deadline)
        out = [p for p in sends(eng) if p.payload]
    assert [p.payload for p in out] == [r2] and last >= 1.2
    assert eng.counters["pacing_lag"] == 1


def test_target_pausing_like_online_is_waited_for() -> None:
    """A rate-limited response (nginx limit_rate: a burst, a ~1 s pause, the rest): online the
    client's timestamps show the response took ~1 s, so the target gets as long."""
    eng = engine(eor_lag=0.2)
    established(eng)
    ts = build_tcp_options(timestamps=(10_000, 0))
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, b"GET /slow", opts=ts), 1.0)
    sends(eng)
    eng.on_response_record(rec(TISN + 1, CISN + 10, ACK | PSH, 1000), 1.001)   # first burst
    ts2 = build_tcp_options(timestamps=(11_016, 0))                            # +1016 ms online
    eng.on_client_packet(cpkt(CISN + 10, OISN + 2001, ACK | FIN, opts=ts2), 1.5)
    fired = []
    while True:
        deadline = eng.next_deadline()
        assert deadline is not None
        if deadline >= 1.9:
            break
        eng.on_timer(deadline)
        fired.append(deadline)
        assert not [p for p in sends(eng) if p.tcp.flags & FIN], fired
    eng.on_response_record(rec(TISN + 1001, CISN + 10, ACK | PSH, 1000), 1.9)  # the rest
    (fin,) = [p for p in sends(eng) if p.tcp.flags & FIN]
    assert fin.tcp.seq == CISN + 10 and eng.counters["pacing_lag"] == 0


def test_target_stalled_after_a_full_segment_gets_resp_wait() -> None:
    """Mid-body the target waits on our ACKs (a loaded copier): a full-size last segment means
    more is coming, so the short quiet period does not end the response."""
    eng = engine(eor_lag=0.2, resp_wait=2.0)
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, b"GET /big"), 1.0)
    eng.on_client_packet(req(CISN + 9, OISN + 1 + HEAD + BODY, b"GET /"), 1.0001)
    assert [p.payload for p in sends(eng)] == [b"GET /big"]
    eng.on_response_record(rec(TISN + 1, CISN + 9, ACK | PSH, HEAD), 1.001)
    assert body(eng, 1.002, 0, 4 * 1448, CISN + 9) == []
    while True:
        deadline = eng.next_deadline()
        assert deadline is not None
        if deadline > 2.5:
            break
        eng.on_timer(deadline)
        assert [p for p in sends(eng) if p.payload] == [], deadline
    assert body(eng, 2.5, 4 * 1448, BODY, CISN + 9)[0].payload == b"GET /"
    assert eng.counters["pacing_lag"] == 0


def test_each_unanswered_request_still_lets_the_next_go_after_resp_wait() -> None:
    """The target acknowledges the requests but its responses never arrive (lost, e.g. in an
    intercept outage): every request is ended by the resp_wait timer and the next one goes.
    The request the timer itself sent keeps its own timer (it used to be cleared right after
    being armed: the session then hung until its -t timeout, the client's later requests never
    copied)."""
    eng = engine()
    established(eng)
    reqs = [b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(4)]
    n = len(reqs[0])
    for i, r in enumerate(reqs):
        eng.on_client_packet(req(CISN + 1 + i * n, OISN + 1 + i * 100, r), 0.01 + i * 1e-3)
    sent = [p.payload for p in sends(eng) if p.payload]
    now = 0.01
    while len(set(sent)) < 4 and now < 10.0:
        # the target acknowledges what was sent, and answers nothing we hear
        eng.on_response_record(rec(TISN + 1, CISN + 1 + len(set(sent)) * n, ACK), now)
        when = eng.next_deadline()
        assert when is not None, f"no timer left with {4 - len(set(sent))} requests to send"
        now = when
        eng.on_timer(now)
        sent += [p.payload for p in sends(eng) if p.payload]
    assert sent == reqs and now < 3 * eng.cfg.resp_wait + 1.0, (sent, now)
    assert eng.counters["pacing_timer"] == 3 and eng.counters["sessions_timeout"] == 0


def test_copy_delay_is_how_long_each_request_waited_between_capture_and_sending() -> None:
    eng = engine()
    established(eng)
    r1, r2 = b"GET /1 HTTP/1.1\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.0)           # sent at once
    eng.on_client_packet(req(CISN + 1 + len(r1), OISN + 1 + 300, r2), 1.1)   # held
    assert [p.payload for p in sends(eng)] == [r1]
    eng.on_response_record(rec(TISN + 1, CISN + 1 + len(r1), ACK | PSH, 300), 1.6)
    assert [p.payload for p in sends(eng)] == [r2]
    delay = eng.copy_delay.summary(last=True)
    assert delay["count"] == 2 and delay["last"] == 500.0 and delay["max"] == 500.0
    assert eng.copy_delay.percentile(50) < 0.1 <= eng.copy_delay.percentile(99) <= 500.0
    assert eng.copy_delay.percentile(99) == 500.0       # its bucket's bound is above: capped
    assert "last" not in eng.latency.summary()


def test_copy_delay_counts_a_parked_segment_from_its_own_capture() -> None:
    eng = engine()
    established(eng)
    r1, r2 = b"hello 1\n", b"hello 2\n"      # not HTTP: a gap waits to be filled
    eng.on_client_packet(req(CISN + 1 + len(r1), OISN + 1 + 300, r2), 1.0)  # past a hole
    assert sends(eng) == [] and eng.counters["clt_gap"] == 1
    eng.on_client_packet(req(CISN + 1, OISN + 1, r1), 1.25)           # fills it
    assert [p.payload for p in sends(eng)] == [r1]
    eng.on_response_record(rec(TISN + 1, CISN + 1 + len(r1), ACK | PSH, 300), 1.6)
    assert [p.payload for p in sends(eng)] == [r2]
    assert round(eng.copy_delay.last_ms, 6) == 600.0     # from its capture at 1.0, not 1.25
