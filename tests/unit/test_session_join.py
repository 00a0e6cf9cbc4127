"""A response's consecutive records, handed to their session joined
(``engine.session.responses``), do what each record in turn did: the same packets at the same
times, the same counters, the same receive point. One difference, by design: a request that may
go partway through the response (the client sent it early, or its count is unusable) goes after
the joined segment and acknowledges all of it, so the pure ACK that followed it is not needed.
And what must not be joined is not."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actions import SendPacket
from engine.packets import ACK, FIN, PSH, RST, parse_ipv4_tcp
from tests.unit.session_transcript import (
    CISN,
    FAKE,
    OISN,
    TISN,
    Transcript,
    engine,
    established,
    rec,
    req,
)

FULL = 1448          # the session's full segment size (MSS 1460 less the timestamp option)
R1, R2 = b"GET /1 HTTP/1.1\r\n\r\n", b"GET /2 HTTP/1.1\r\n\r\n"
TS = bytes((1, 1, 8, 10)) + (900).to_bytes(4, "big") + (111).to_bytes(4, "big")

# one response segment: (payload length, flags beyond ACK)
Seg = Tuple[int, int]


def ready(online_answer: int) -> Transcript:
    """A live session: request 1 sent to the target, request 2 (sent online after the client
    had ``online_answer`` response bytes) waiting behind it."""
    eng = engine()
    established(eng)
    eng.on_client_packet(req(CISN + 1, OISN + 1, R1), 1.0)
    eng.on_client_packet(req(CISN + 1 + len(R1), OISN + 1 + online_answer, R2), 1.0)
    eng.flush(1.0)
    eng.taken()
    return eng


def records(segs: Sequence[Seg], other_after: int = -1) -> List[bytes]:
    """The target's response to request 1 as records (a record of another fake client after
    segment ``other_after``, -1: none)."""
    out, seq = [], TISN + 1
    for i, (plen, flags) in enumerate(segs):
        out.append(rec(seq, CISN + 1 + len(R1), ACK | flags, plen, win=3000 - 100 * i,
                       opts=TS))
        seq += plen
        if i == other_after:
            out.append(rec(77, 88, ACK | PSH, 10, dst=FAKE[1], dport=41000))
    return out


def play(eng: Transcript, recs: List[bytes], joined: bool) -> List[Tuple[float, bytes]]:
    """The records at t=1.01 (in one read, or one call each), then every timer until 20 s:
    the packets sent and when."""
    now = 1.01
    if joined:
        eng.on_response_records(recs, now)
    else:
        for r in recs:
            eng.on_response_record(r, now)
    eng.flush(now)
    sent = [(now, a.packet) for a in eng.taken() if isinstance(a, SendPacket)]
    while True:
        deadline = eng.next_deadline()
        if deadline is None or deadline > 20.0:
            return sent
        eng.on_timer(deadline)
        eng.flush(deadline)
        sent += [(deadline, a.packet) for a in eng.taken() if isinstance(a, SendPacket)]


def state(eng: Transcript) -> Dict[str, object]:
    """The session's receive and send points (or that it is gone), and the counters."""
    out: Dict[str, object] = {"counters": {k: v for k, v in eng.counters.items() if v}}
    for s in eng.by_fake.values():
        out[str(s.fkey)] = (s.rcv_nxt, s.snd_nxt, s.snd_una, s.state, s.peer_fin, s.peer_win,
                            s.ts_recent)
    return out


def both(segs: Sequence[Seg], online_answer: int, other_after: int = -1
         ) -> Tuple[List[Tuple[float, bytes]], List[Tuple[float, bytes]], Transcript, Transcript]:
    one, many = ready(online_answer), ready(online_answer)
    return (play(one, records(segs, other_after), joined=False),
            play(many, records(segs, other_after), joined=True), one, many)


segments = st.lists(
    st.tuples(st.sampled_from([120, 300, FULL]),
              st.sampled_from([0, 0, PSH])),
    min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(segs=segments, fin=st.booleans(), answer_delta=st.sampled_from([0, 0, -50, 400]),
       other=st.integers(min_value=-1, max_value=5))
def test_joined_records_send_what_one_by_one_sent(segs: List[Seg], fin: bool,
                                                   answer_delta: int, other: int) -> None:
    if fin:
        segs = [*segs[:-1], (segs[-1][0], segs[-1][1] | FIN)]
    total = sum(plen for plen, _ in segs)
    one_sent, many_sent, one, many = both(segs, total + answer_delta, other)
    assert many_sent == one_sent
    assert state(many) == state(one)


@settings(max_examples=150, deadline=None)
@given(segs=segments, answer=st.integers(min_value=-200, max_value=3 * FULL),
       other=st.integers(min_value=-1, max_value=5))
def test_a_request_due_partway_acknowledges_the_whole_joined_segment(
        segs: List[Seg], answer: int, other: int) -> None:
    one_sent, many_sent, _, _ = both(segs, answer, other)

    def content(sent: List[Tuple[float, bytes]]) -> List[Tuple[float, int, int, bytes]]:
        """Every packet but pure ACKs: when, its seq and flags, its payload (not its ACK)."""
        out = []
        for when, raw in sent:
            p = parse_ipv4_tcp(raw)
            if p.payload or p.tcp.flags & ~(ACK | PSH):
                out.append((when, p.tcp.seq, p.tcp.flags, p.payload))
        return out
    assert content(many_sent) == content(one_sent)
    assert len(many_sent) <= len(one_sent)          # at most a pure ACK fewer
    acks = [parse_ipv4_tcp(raw).tcp.ack for _, raw in many_sent]
    assert acks == sorted(acks)


def test_nginx_header_then_body_sends_the_next_request_once_both_came() -> None:
    one_sent, many_sent, _, many = both([(240, PSH), (612, PSH)], 852)
    assert many_sent == one_sent
    (first_time, first), *_ = many_sent
    assert first_time == 1.01 and R2 in first          # request 2 right away, on the count
    assert many.counters["resp"] == 1 + 2 and many.counters["resp_cont"] == 2   # + SYN-ACK
    assert many.counters["pacing_fast"] == 1


def test_a_hole_a_rst_and_another_ack_are_not_joined_over() -> None:
    ack = CISN + 1 + len(R1)
    cases = [
        [rec(TISN + 1, ack, ACK, 100, opts=TS), rec(TISN + 301, ack, ACK | PSH, 100, opts=TS)],
        [rec(TISN + 1, ack, ACK, 100, opts=TS), rec(TISN + 101, ack, RST | ACK, 0)],
        [rec(TISN + 1, ack - 5, ACK, 100, opts=TS), rec(TISN + 101, ack, ACK | PSH, 100,
                                                        opts=TS)],
    ]
    for recs in cases:
        one, many = ready(500), ready(500)
        assert play(many, recs, joined=True) == play(one, recs, joined=False)
        assert state(many) == state(one)
    assert many.counters["resp"] == 1 + 2 and many.counters["resp_cont"] == 2


def test_a_bad_record_between_two_segments_is_counted_and_skipped() -> None:
    eng = ready(600)
    recs = records([(300, 0), (300, PSH)])
    eng.on_response_records([recs[0], b"\x45" + b"\x00" * 10, recs[1]], 1.01)
    assert eng.counters["channel_malformed"] == 1
    (s,) = eng.by_fake.values()
    assert s.rcv_nxt == TISN + 601 and eng.counters["pacing_fast"] == 1
