"""Per-request selection in the session emulator: the target sees a clean connection that
carries only the selected requests (sequence space shifted, FIN after the last copied byte),
a connection with nothing selected is never opened, and pacing ignores skipped responses."""

from __future__ import annotations

import random
from typing import Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http.select import Selection
from engine.options import OptionsError, parse_tcpcopy_args, selection
from engine.packets import ACK, FIN, PSH, RST, SYN, Packet
from engine.session.config import Route, SessionConfig
from tests.unit.session_transcript import (
    CISN,
    FAKE,
    OISN,
    ONLINE,
    TARGET,
    TISN,
    Transcript,
    cpkt,
    rec,
    sends,
    syn_opts,
)

API = b"GET /api/a HTTP/1.1\r\nHost: a.example\r\n\r\n"
STATIC = b"GET /static/x.css HTTP/1.1\r\nHost: a.example\r\n\r\n"
POST = b"POST /api/b HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"POST /api/c HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")


def engine(*flags: str, **kw: object) -> Transcript:
    opts = parse_tcpcopy_args(["-x", "80-10.77.1.20:8080", "-s", "10.77.1.30", *flags])
    kw.setdefault("fake_ips", list(FAKE))
    return Transcript(SessionConfig([Route(ONLINE, 80, TARGET, 8080)],  # type: ignore[arg-type]
                                    selection=selection(opts), **kw))


def handshake(eng: Transcript, now: float = 0.0) -> None:
    """The client's SYN and third ACK (as captured)."""
    eng.on_client_packet(cpkt(CISN, 0, SYN, opts=syn_opts()), now)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK), now + 0.001)


def synack(eng: Transcript, now: float) -> List[Packet]:
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK), now)
    eng.flush(now)
    return sends(eng)


def data(packets: List[Packet]) -> List[Packet]:
    return [p for p in packets if p.payload]


def test_no_rule_means_no_selection_layer() -> None:
    """Without a rule the emulator never frames (today's path): the config holds no
    selection, and the stats have no selection counters."""
    eng = engine()
    assert eng.cfg.selection is None and "requests_selected" not in eng.counters
    assert eng.selection_report() is None
    assert SessionConfig([], selection=Selection()).selection is None
    assert engine("--on-unparsable", "copy").cfg.selection is None


def test_a_connection_is_opened_only_with_its_first_selected_request() -> None:
    eng = engine("--allow-path", "/api")
    handshake(eng)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, STATIC), 0.01)
    assert sends(eng) == []                                 # skipped: no SYN yet
    eng.on_client_packet(cpkt(CISN + 1 + len(STATIC), OISN + 501, ACK | PSH, API), 0.02)
    (syn,) = sends(eng)
    assert syn.tcp.flags == SYN and syn.tcp.seq == CISN       # the client's own ISN
    (first,) = data(synack(eng, 0.03))
    assert first.payload == API and first.tcp.seq == CISN + 1  # shifted: copied offset 0
    report = eng.selection_report()
    assert report is not None and report["rules"] == ["--allow-path /api"]
    assert eng.counters["requests_selected"] == 1 and eng.counters["requests_skipped"] == 1


def test_keep_alive_interleaving_copies_exactly_the_selected_requests_in_order() -> None:
    """/api GET, /static GET, /api POST (Content-Length), /static, /api POST (chunked): the
    target gets the three /api requests back to back, and each goes as soon as the target
    answered the one before (the skipped responses are not waited for)."""
    eng = engine("--allow-path", "/api")
    handshake(eng)
    stream = [(API, 300), (STATIC, 5000), (POST, 200), (STATIC, 7000), (CHUNKED, 100)]
    seq, cack, t = CISN + 1, OISN + 1, 0.01
    for payload, answer in stream:
        eng.on_client_packet(cpkt(seq, cack, ACK | PSH, payload), t)
        seq, cack, t = seq + len(payload), cack + answer, t + 0.001
    eng.on_client_packet(cpkt(seq, cack, ACK | FIN), t)
    got = data(synack(eng, 0.1))
    tseq = TISN + 1
    for i, size in enumerate((300, 200, 100)):
        copied_end = CISN + 1 + sum(len(p.payload) for p in got)
        eng.on_response_record(rec(tseq, copied_end, ACK | PSH, size), 0.2 + i * 0.01)
        eng.flush(0.2 + i * 0.01)
        tseq += size
        got += [p for p in sends(eng) if p.payload or p.tcp.flags & FIN]
    payloads = [p.payload for p in got if p.payload]
    assert payloads == [API, POST, CHUNKED]
    assert [p.tcp.seq for p in got if p.payload] == [
        CISN + 1, CISN + 1 + len(API), CISN + 1 + len(API) + len(POST)]
    (fin,) = [p for p in got if p.tcp.flags & FIN]
    assert fin.tcp.seq == CISN + 1 + len(API) + len(POST) + len(CHUNKED)
    assert eng.counters["pacing_lag"] == 0 and eng.counters["pacing_timer"] == 0
    assert eng.counters["pacing_fast"] >= 2


def test_a_connection_with_nothing_selected_is_never_opened() -> None:
    eng = engine("--allow-host", "a.example")
    handshake(eng)
    other = b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n"
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, other), 0.01)
    eng.on_client_packet(cpkt(CISN + 1 + len(other), OISN + 301, ACK | FIN), 0.02)
    assert sends(eng) == []
    assert eng.counters["sessions_unselected"] == 1 and eng.counters["sent"] == 0
    while (deadline := eng.next_deadline()) is not None:
        eng.on_timer(deadline)
    assert sends(eng) == [] and eng.by_client == {} and eng.live == 0


def test_an_idle_unselected_connection_ends_on_the_keepalive_timeout() -> None:
    eng = engine("--safe", keepalive_timeout=30.0, session_timeout=10.0)
    handshake(eng)
    put = b"PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, put), 1.0)
    deadline = eng.next_deadline()
    assert deadline is not None and deadline >= 31.0 - 1e-6     # not the 10 s session timeout
    eng.on_timer(deadline)
    assert sends(eng) == [] and eng.counters["sessions_unselected"] == 1
    assert eng.counters["sessions_timeout"] == 0


def test_pipelined_requests_in_one_segment_keep_only_the_selected_bytes() -> None:
    eng = engine("--safe")
    handshake(eng)
    delete = b"DELETE /api/1 HTTP/1.1\r\nHost: a\r\n\r\n"
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, API + delete + STATIC), 0.01)
    sends(eng)
    (p,) = data(synack(eng, 0.02))
    assert p.payload == API + STATIC and p.tcp.seq == CISN + 1
    by_rule = eng.selection_report()["by_rule"]  # type: ignore[index]
    assert by_rule["--safe"]["skipped"] == 1 and by_rule["default"]["selected"] == 2


def test_segments_out_of_order_are_framed_in_order() -> None:
    eng = engine("--allow-path", "/api")
    handshake(eng)
    whole = STATIC + POST
    cut = len(STATIC) + 10
    eng.on_client_packet(cpkt(CISN + 1 + cut, OISN + 1, ACK | PSH, whole[cut:]), 0.01)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, whole[:cut]), 0.011)
    sends(eng)
    got = data(synack(eng, 0.02))
    assert b"".join(p.payload for p in got) == POST and got[0].tcp.seq == CISN + 1


def test_a_client_rst_is_mapped_to_the_copied_stream() -> None:
    eng = engine("--allow-path", "/api")
    handshake(eng)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, API), 0.01)
    sends(eng)
    synack(eng, 0.02)
    eng.on_client_packet(cpkt(CISN + 1 + len(API), OISN + 1, ACK | PSH, STATIC), 0.03)
    eng.on_response_record(rec(TISN + 1, CISN + 1 + len(API), ACK | PSH, 100), 0.04)
    # a blind RST far away is not believed; the real one is
    eng.on_client_packet(cpkt(CISN + 900_000, 0, RST), 0.05)
    assert eng.counters["clt_rst_ignored"] == 1
    eng.on_client_packet(cpkt(CISN + 1 + len(API) + len(STATIC), 0, RST), 0.06)
    rsts = [p for p in sends(eng) if p.tcp.flags & RST]
    assert rsts and rsts[-1].tcp.seq == CISN + 1 + len(API)


def test_replicas_share_one_selection_and_count_once() -> None:
    eng = engine("--allow-path", "/api", replicas=2)
    handshake(eng)
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, STATIC + API), 0.01)
    syns = sends(eng)
    assert len(syns) == 2 and all(p.tcp.flags == SYN for p in syns)
    assert eng.counters["requests_selected"] == 0      # refreshed by the report
    eng.selection_report()
    assert eng.counters["requests_selected"] == 1 and eng.counters["requests_skipped"] == 1


def test_an_oversized_head_is_bounded_and_decided_by_on_unparsable() -> None:
    eng = engine("--allow-path", "/api", "--on-unparsable", "skip",
                 session_buffer_bytes=1 << 20)
    handshake(eng)
    head = b"GET /api/x HTTP/1.1\r\nX-Big: " + b"a" * 70_000
    seq = CISN + 1
    for off in range(0, len(head), 1400):
        eng.on_client_packet(cpkt(seq + off, OISN + 1, ACK, head[off:off + 1400]), 0.01)
        assert eng.buffered_total <= 66_000 + 1400       # the head bound, not the stream
    assert sends(eng) == [] and eng.counters["sent"] == 0
    eng.selection_report()
    assert eng.counters["streams_unparsable"] == 1


def test_options_keep_the_rule_order_and_name_a_bad_rule() -> None:
    opts = parse_tcpcopy_args(["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--deny-path",
                               "/api/admin", "--allow-host", "*.a.example", "--allow-path",
                               "~^/api/v[12]/", "--safe", "--safe-methods", "get,head"])
    assert opts.select_rules == (("--deny-path", "/api/admin"), ("--allow-host", "*.a.example"),
                                 ("--allow-path", "~^/api/v[12]/"))
    assert opts.safe and opts.safe_methods == ("GET", "HEAD")
    sel = selection(opts)
    assert sel is not None and sel.rules[0].name == "--deny-path /api/admin"
    with pytest.raises(OptionsError, match=r"--allow-path '~\(': bad regular expression"):
        parse_tcpcopy_args(["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--allow-path", "~("])
    with pytest.raises(OptionsError, match="--allow-header 'nocolon'"):
        parse_tcpcopy_args(["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--allow-header",
                            "nocolon"])
    with pytest.raises(OptionsError, match="--on-unparsable"):
        parse_tcpcopy_args(["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--on-unparsable", "x"])


REQUESTS = st.sampled_from([API, STATIC, POST, CHUNKED,
                            b"PUT /api/p HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz",
                            b"HEAD /static/h HTTP/1.1\r\n\r\n"])


@settings(max_examples=60, deadline=None)
@given(st.lists(REQUESTS, min_size=1, max_size=12), st.integers(0, 2**32 - 1),
       st.randoms(use_true_random=False))
def test_copied_stream_is_the_selected_requests_under_any_segmentation(
        reqs: List[bytes], isn: int, rnd: random.Random) -> None:
    """Random requests, cut at random points, some segments swapped or repeated, any ISN
    (sequence wrap included): what the target receives, by sequence number, is exactly the
    selected requests back to back, followed by the FIN."""
    eng = engine("--allow-path", "/api", "--safe", no_wait=True)
    stream = b"".join(reqs)
    cuts = sorted(rnd.sample(range(1, len(stream)), min(len(stream) - 1, rnd.randint(0, 8))))
    bounds = [0, *cuts, len(stream)]
    segs = [(bounds[i], stream[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    if len(segs) > 2 and rnd.random() < 0.5:
        i = rnd.randrange(len(segs) - 1)
        segs[i], segs[i + 1] = segs[i + 1], segs[i]
    if rnd.random() < 0.3:
        segs.append(segs[rnd.randrange(len(segs))])
    eng.on_client_packet(cpkt(isn, 0, SYN, opts=syn_opts()), 0.0)
    for off, part in segs:
        eng.on_client_packet(cpkt((isn + 1 + off) & 0xFFFFFFFF, OISN + 1, ACK | PSH, part),
                             0.01)
    eng.on_client_packet(cpkt((isn + 1 + len(stream)) & 0xFFFFFFFF, OISN + 1, ACK | FIN), 0.02)
    expected = b"".join(r for r in reqs
                        if r.split(b" ", 2)[1].startswith(b"/api")
                        and r.split(b" ", 1)[0] in (b"GET", b"HEAD", b"OPTIONS"))
    got: Dict[int, bytes] = {}
    fin_at = None
    for p in sends(eng):
        if p.tcp.flags & SYN:
            assert p.tcp.seq == isn
    eng.on_response_record(rec(TISN, (isn + 1) & 0xFFFFFFFF, SYN | ACK, win=65535), 0.03)
    eng.flush(0.03)
    for p in sends(eng):
        if p.payload:
            got[(p.tcp.seq - isn - 1) & 0xFFFFFFFF] = p.payload
        if p.tcp.flags & FIN:
            fin_at = (p.tcp.seq - isn - 1) & 0xFFFFFFFF
    copied = b""
    for off in sorted(got):
        assert off == len(copied)
        copied += got[off]
    assert copied == expected
    if expected:
        assert fin_at == len(expected)
    else:
        assert eng.counters["sessions_unselected"] == 1 and eng.counters["sent"] == 0


def test_without_a_syn_the_stream_starts_at_the_first_segment_seen() -> None:
    """A connection caught mid-way (no SYN): framing starts with the first segment seen; the
    faked SYN goes with the first selected byte, one before it in the copied space."""
    eng = engine("--allow-path", "/api")
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, STATIC), 0.01)
    assert sends(eng) == []
    eng.on_client_packet(cpkt(CISN + 1 + len(STATIC), OISN + 400, ACK | PSH, API), 0.02)
    (syn,) = sends(eng)
    assert syn.tcp.flags == SYN and syn.tcp.seq == CISN
    assert eng.counters["recon_for_no_syn"] == 1
    (p,) = data(synack(eng, 0.03))
    assert p.payload == API and p.tcp.seq == CISN + 1
