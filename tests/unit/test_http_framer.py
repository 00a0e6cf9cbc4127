"""The HTTP/1.x request framer as transcripts: bytes in, pieces out (engine/http/framer.py)."""

from __future__ import annotations

from typing import Dict, List, Union

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http.framer import (
    BAD_CHUNK,
    BAD_CONTENT_LENGTH,
    BAD_HEADER,
    BAD_REQUEST_LINE,
    CHUNKED,
    GAP,
    HTTP2_PREFACE,
    LENGTH,
    NONE,
    NOT_HTTP,
    OVERSIZED_HEAD,
    UNSUPPORTED_TRANSFER_ENCODING,
    UPGRADE,
    Opaque,
    Piece,
    Request,
    RequestFramer,
)
from tests.unit.http_requests import requests, segmented

GET = b"GET /api/x?q=1 HTTP/1.1\r\nHost: API.Example.com:8080\r\nAccept: */*\r\n\r\n"
POST = (b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\nhello")
CHUNKED_POST = (b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1;q=\"a b\"\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
HEAD_10 = b"HEAD /static/a.css HTTP/1.0\r\n\r\n"
STREAM = GET + POST + CHUNKED_POST + HEAD_10


def feed_all(segments: List[bytes], max_head: int = 65536) -> List[Piece]:
    framer = RequestFramer(max_head)
    return [p for seg in segments for p in framer.feed(seg)]


def by_unit(pieces: List[Piece]) -> Dict[Union[Request, Opaque], bytes]:
    """Each unit's bytes, in order of first appearance."""
    out: Dict[Union[Request, Opaque], bytes] = {}
    for piece in pieces:
        out[piece.unit] = out.get(piece.unit, b"") + piece.data
    return out


def check_contiguous(pieces: List[Piece], stream: bytes) -> None:
    offset = 0
    for piece in pieces:
        assert piece.start == offset and piece.data
        offset += len(piece.data)
    assert b"".join(p.data for p in pieces) == stream[:offset]


# ---------------------------------------------------------------- transcripts


def test_pipelined_requests_in_one_feed() -> None:
    pieces = feed_all([STREAM])
    assert [(p.start, len(p.data), p.done) for p in pieces] == [
        (0, len(GET), True), (len(GET), len(POST), True),
        (len(GET + POST), len(CHUNKED_POST), True),
        (len(GET + POST + CHUNKED_POST), len(HEAD_10), True)]
    get, post, chunked, head = (p.unit for p in pieces)
    assert isinstance(get, Request) and isinstance(post, Request)
    assert isinstance(chunked, Request) and isinstance(head, Request)
    assert (get.method, get.target, get.path, get.host, get.body) == (
        "GET", "/api/x?q=1", "/api/x", "api.example.com", NONE)
    assert get.header("ACCEPT") == "*/*" and get.header("missing") is None
    assert (post.body, post.content_length, post.expect_continue) == (LENGTH, 5, True)
    assert (chunked.body, chunked.head_length) == (CHUNKED, CHUNKED_POST.index(b"\r\n\r\n") + 4)
    assert (head.method, head.version, head.host, head.number) == ("HEAD", "1.0", "", 3)


def test_split_at_every_offset_gives_the_same_units() -> None:
    whole = by_unit(feed_all([STREAM]))
    for cut in range(len(STREAM) + 1):
        pieces = feed_all([STREAM[:cut], STREAM[cut:]])
        check_contiguous(pieces, STREAM)
        assert by_unit(pieces) == whole, cut


def test_one_byte_segments() -> None:
    pieces = feed_all([STREAM[i:i + 1] for i in range(len(STREAM))])
    assert by_unit(pieces) == by_unit(feed_all([STREAM]))
    assert [p.done for p in pieces].count(True) == 4


def test_a_body_streams_through_without_being_held() -> None:
    framer = RequestFramer()
    head = b"PUT /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"
    first = framer.feed(head + b"x" * 10)
    assert [(len(p.data), p.done) for p in first] == [(len(head) + 10, False)]
    for _ in range(99):
        (piece,) = framer.feed(b"y" * 10000)
        assert len(piece.data) == 10000 and not piece.done and framer.pending == 0
    (last, nxt) = framer.feed(b"z" * 9990 + b"GET / HTTP/1.1\r\n\r\n")
    assert last.done and len(last.data) == 9990 and isinstance(nxt.unit, Request)


def test_held_head_is_bounded_and_an_oversized_head_becomes_opaque() -> None:
    framer = RequestFramer(max_head=1024)
    assert framer.feed(GET) and framer.pending == 0
    assert framer.feed(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 900) == []
    assert framer.pending > 900
    pieces = framer.feed(b"a" * 200)
    assert [type(p.unit) for p in pieces] == [Opaque]
    assert framer.opaque == Opaque(len(GET), OVERSIZED_HEAD)
    assert framer.pending == 0 and not framer.opaque.not_http
    assert [p.unit for p in framer.feed(GET)] == [framer.opaque]   # the rest stays opaque


def test_100_continue_body_follows_in_a_later_segment() -> None:
    framer = RequestFramer()
    head = POST[:-5]
    (piece,) = framer.feed(head)
    assert isinstance(piece.unit, Request) and piece.unit.expect_continue and not piece.done
    (body,) = framer.feed(b"hello")
    assert body.done and body.unit is piece.unit


def test_chunked_wins_over_content_length() -> None:
    raw = (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n")
    (piece,) = feed_all([raw])
    assert piece.done and isinstance(piece.unit, Request) and piece.unit.body == CHUNKED


def test_bare_lf_line_ends_and_leading_empty_lines_are_tolerated() -> None:
    raw = b"\r\nGET / HTTP/1.1\nHost: h\n\n" + b"POST / HTTP/1.1\nContent-Length: 2\n\nok"
    pieces = feed_all([raw])
    assert [(p.start, p.done) for p in pieces] == [(0, True), (raw.index(b"POST"), True)]


def test_upgrade_makes_the_rest_a_tunnel_of_that_request() -> None:
    up = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    framer = RequestFramer()
    (req,) = framer.feed(up)
    (tunnel,) = framer.feed(b"\x81\x05hello")
    assert isinstance(tunnel.unit, Opaque) and tunnel.unit.reason == UPGRADE
    assert tunnel.unit.tunnel_of is req.unit and tunnel.start == len(up)


def test_abandon_turns_held_bytes_and_the_rest_opaque() -> None:
    framer = RequestFramer()
    assert framer.feed(b"GET / HT") == []
    (held,) = framer.abandon(GAP)
    assert held == Piece(0, b"GET / HT", Opaque(0, GAP), False)
    assert framer.abandon(GAP) == []


# ---------------------------------------------------------------- non-HTTP and unparsable


def opaque_of(raw: bytes) -> Opaque:
    framer = RequestFramer()
    pieces = framer.feed(raw)
    assert framer.opaque is not None
    assert pieces[-1].unit == framer.opaque and b"".join(p.data for p in pieces) == raw
    return framer.opaque


def test_non_http_first_bytes() -> None:
    for raw in (b"*1\r\n$4\r\nPING\r\n", b"\x16\x03\x01\x02\x00\x01\x00", b"SSH-2.0-OpenSSH\r\n",
                b"GET / HTTP/2.0\r\n\r\n", b"\x00", b"A" * 40):
        assert opaque_of(raw) == Opaque(0, NOT_HTTP), raw
        assert opaque_of(raw).not_http


def test_non_http_is_decided_as_soon_as_the_bytes_allow() -> None:
    framer = RequestFramer()
    assert framer.feed(b"GE") == [] and framer.opaque is None      # may still be GET
    assert framer.feed(b"T /x HTTP/1.1\r\n") == []                  # a request line: wait
    framer = RequestFramer()
    assert framer.feed(b"*1\r")[0].unit == Opaque(0, NOT_HTTP)      # '\r' is not a tchar


def test_http2_preface() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert opaque_of(preface) == Opaque(0, HTTP2_PREFACE) and opaque_of(preface).not_http
    later = opaque_of(GET + preface)
    assert later == Opaque(len(GET), HTTP2_PREFACE) and not later.not_http


def test_unparsable_after_good_requests() -> None:
    cases = {
        b"garbage\x00\x01\r\n\r\n": BAD_REQUEST_LINE,
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n": BAD_HEADER,
        b"GET / HTTP/1.1\r\nX : y\r\n\r\n": BAD_HEADER,
        b"GET / HTTP/1.1\r\nX: y\r\n folded\r\n\r\n": BAD_HEADER,
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n": BAD_CONTENT_LENGTH,
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n": BAD_CONTENT_LENGTH,
        b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n": BAD_CONTENT_LENGTH,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n": UNSUPPORTED_TRANSFER_ENCODING,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n":
            UNSUPPORTED_TRANSFER_ENCODING,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n": BAD_CHUNK,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX": BAD_CHUNK,
    }
    for raw, reason in cases.items():
        opaque = opaque_of(GET + raw)
        assert opaque.reason == reason, raw
        assert not opaque.not_http


def test_a_bad_chunk_keeps_the_bytes_before_it_with_the_request() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n"
    pieces = feed_all([raw])
    assert [(type(p.unit), p.done) for p in pieces] == [(Request, False), (Opaque, False)]
    assert pieces[1].start == raw.index(b"zz") and pieces[1].unit.reason == BAD_CHUNK


def test_duplicate_equal_content_lengths_are_accepted() -> None:
    raw = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
    (piece,) = feed_all([raw])
    assert piece.done and piece.unit.content_length == 2   # type: ignore[union-attr]


def test_absolute_form_target() -> None:
    (piece,) = feed_all([b"GET http://Proxy.Example.COM:81/p/q?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"])
    req = piece.unit
    assert isinstance(req, Request)
    assert (req.host, req.path, req.origin_target) == ("proxy.example.com", "/p/q", "/p/q?x=1")


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=6), st.data())
def test_random_requests_in_random_segments_frame_back(gen: list, data: st.DataObject) -> None:
    stream = b"".join(g.wire for g in gen)
    pieces = feed_all(data.draw(segmented(stream)))
    check_contiguous(pieces, stream)
    units = by_unit(pieces)
    assert list(units.values()) == [g.wire for g in gen]
    assert all(isinstance(u, Request) for u in units)
    assert [(u.method, u.target, u.host, u.body) for u in units] == [   # type: ignore[union-attr]
        (g.method, g.path, g.host, g.body) for g in gen]
    assert [p.done for p in pieces].count(True) == len(gen)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_any_bytes_never_raise_and_are_all_accounted(junk: bytes, data: st.DataObject) -> None:
    stream = GET + junk
    framer = RequestFramer(max_head=128)
    pieces = [p for seg in data.draw(segmented(stream)) for p in framer.feed(seg)]
    check_contiguous(pieces, stream)
    assert sum(len(p.data) for p in pieces) + framer.pending == len(stream)
    assert framer.pending <= 128 + 4096
