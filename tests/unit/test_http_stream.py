"""SelectedStream (engine/http/stream.py): client segments in, the selected requests' bytes out,
and the original -> copied offset mapping the session will apply."""

from __future__ import annotations

from typing import List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http.framer import GAP, TRUNCATED
from engine.http.select import Selection
from engine.http.stream import Chunk, SelectedStream
from tests.unit.http_requests import METHODS, PATHS, requests, segmented

API1 = b"GET /api/1 HTTP/1.1\r\nHost: h\r\n\r\n"
STATIC = b"GET /static/a.js HTTP/1.1\r\nHost: h\r\n\r\n"
UPLOAD = b"POST /static/up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
API2 = (b"POST /api/2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x\r\nabc\r\n0\r\n\r\n")
API3 = b"PUT /api/3 HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
KEEPALIVE = API1 + STATIC + UPLOAD + API2


def allow(*flags: str, **options: object) -> SelectedStream:
    pairs = [(f.split(" ", 1)[0], f.split(" ", 1)[1]) for f in flags]
    return SelectedStream(Selection.from_flags(pairs, **options))  # type: ignore[arg-type]


def feed(stream: SelectedStream, segments: List[bytes], start: int = 0) -> List[Chunk]:
    out, offset = [], start
    for seg in segments:
        out += stream.feed(offset, seg)
        offset += len(seg)
    return out


def joined(chunks: List[Chunk]) -> bytes:
    offset = 0
    for chunk in chunks:
        assert chunk.offset == offset, "copied chunks are contiguous"
        offset += len(chunk.data)
    return b"".join(c.data for c in chunks)


def test_allow_path_copies_exactly_the_api_requests_of_a_keepalive_connection() -> None:
    stream = allow("--allow-path /api")
    assert joined(feed(stream, [KEEPALIVE])) == API1 + API2
    assert stream.selected and stream.copied == len(API1 + API2)
    assert stream.skipped == len(STATIC + UPLOAD)
    skipped_end = len(API1 + STATIC + UPLOAD)
    assert stream.position(0) == 0
    assert stream.position(len(API1)) == len(API1)          # start of the skipped STATIC
    assert stream.position(len(API1) + 5) == len(API1)       # inside it: the next copied byte
    assert stream.position(skipped_end) == len(API1)         # API2's first byte
    assert stream.position(skipped_end + 7) == len(API1) + 7
    assert stream.position(len(KEEPALIVE)) == stream.copied  # where the FIN goes
    assert stream.position(len(KEEPALIVE) + 1) is None       # not fed yet
    counters = stream.selection.counters()
    assert counters["--allow-path /api"]["selected"] == 2
    assert counters["--allow-path (none matched)"]["skipped"] == 2


def test_one_segment_per_request_gives_one_chunk_per_selected_request() -> None:
    stream = allow("--allow-path /api")
    assert [stream.feed(0, API1), stream.feed(len(API1), STATIC)] == [[Chunk(0, API1)], []]
    assert stream.feed(len(API1 + STATIC), UPLOAD[:40]) == []
    assert stream.feed(len(API1 + STATIC) + 40, UPLOAD[40:] + API2) == [Chunk(len(API1), API2)]


def test_nothing_selected_means_nothing_sent_and_no_connection() -> None:
    stream = allow("--allow-path /admin")
    assert feed(stream, [KEEPALIVE[:50], KEEPALIVE[50:]]) == []
    assert not stream.selected and stream.position(len(KEEPALIVE)) == 0


def test_a_held_head_is_not_decided_until_complete() -> None:
    stream = allow("--allow-path /api")
    assert stream.feed(0, API1[:10]) == [] and stream.decided == 0
    assert stream.position(5) is None
    assert stream.feed(10, API1[10:]) == [Chunk(0, API1)] and stream.decided == len(API1)


def test_retransmissions_are_trimmed() -> None:
    stream = allow()
    assert stream.feed(0, API1) == [Chunk(0, API1)]
    assert stream.feed(0, API1) == []
    assert stream.feed(10, API1[10:] + STATIC) == [Chunk(len(API1), STATIC)]


def test_non_http_session_is_copied_whole_by_default_and_skipped_on_request() -> None:
    redis = [b"*1\r\n$4\r\nPING\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"]
    stream = allow("--allow-path /api")
    assert joined(feed(stream, redis)) == b"".join(redis)
    assert stream.selection.counters()["--non-http copy"]["non_http"] == 1
    skipping = allow(non_http="skip")
    assert feed(skipping, redis) == [] and not skipping.selected


def test_unparsable_remainder_follows_on_unparsable() -> None:
    garbage = b"\x00\x01garbage"
    copy = allow("--allow-path /api")
    assert joined(feed(copy, [API1 + STATIC + garbage])) == API1 + garbage
    skip = allow("--allow-path /api", on_unparsable="skip")
    assert joined(feed(skip, [API1 + garbage, b"more"])) == API1
    assert skip.selection.counters()["--on-unparsable skip"]["unparsable"] == 1


def test_an_upgrade_tunnel_follows_its_request() -> None:
    ws = b"GET /api/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
    stream = allow("--allow-path /api", on_unparsable="skip")
    assert joined(feed(stream, [ws, b"\x81\x02hi"])) == ws + b"\x81\x02hi"
    other = allow("--allow-path /api")
    assert feed(other, [b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"]) == []


def test_a_gap_ends_framing_and_the_hole_is_kept_when_copying() -> None:
    stream = allow("--allow-path /api")
    part = API1 + API3[:-5]                                  # the body's last 5 bytes are lost
    assert stream.feed(0, part) == [Chunk(0, part)]
    gap_at = len(part)
    out = stream.feed(gap_at + 5, b"tail")
    assert out == [Chunk(gap_at + 5, b"tail")]                # copied, after a 5-byte hole
    assert stream.framer.opaque is not None and stream.framer.opaque.reason == GAP
    assert stream.position(gap_at + 9) == gap_at + 9
    skip = allow("--allow-path /api", on_unparsable="skip")
    skip.feed(0, API1 + b"GET /ap")
    assert skip.feed(len(API1) + 10, b"tail") == [] and skip.position(len(API1) + 14) == len(API1)


def test_close_decides_a_truncated_head() -> None:
    stream = allow(on_unparsable="skip")
    assert stream.feed(0, API1 + b"GET /x HT") == [Chunk(0, API1)]
    assert stream.close() == [] and stream.decided == len(API1) + 9
    assert stream.framer.opaque is not None and stream.framer.opaque.reason == TRUNCATED
    assert stream.position(len(API1) + 9) == len(API1)


# ---------------------------------------------------------------- the round-trip property


@settings(max_examples=200, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=8), st.data(),
       st.lists(st.sampled_from(PATHS), max_size=2), st.lists(st.sampled_from(METHODS),
                                                              max_size=2))
def test_copied_stream_is_the_selected_requests(gen: list, data: st.DataObject,
                                                paths: List[str], methods: List[str]) -> None:
    flags: List[Tuple[str, str]] = [("--allow-path", p.split("?")[0]) for p in paths]
    if methods:
        flags.append(("--allow-method", ",".join(methods)))
    selection = Selection.from_flags(flags)
    stream = SelectedStream(selection)
    original = b"".join(g.wire for g in gen)
    segments = data.draw(segmented(original))
    chunks = feed(stream, segments)

    def wanted(g: object) -> bool:
        path = g.path.split("?")[0]  # type: ignore[attr-defined]
        return ((not paths or any(path.startswith(p.split("?")[0]) for p in paths))
                and (not methods or g.method in methods))  # type: ignore[attr-defined]

    expected = b"".join(g.wire for g in gen if wanted(g))
    assert joined(chunks) == expected
    assert stream.selected == bool(expected)
    # the mapping: every copied original byte lands where the copied stream has it
    copied_stream = joined(chunks)
    offset = 0
    for g in gen:
        end = offset + len(g.wire)
        pos = stream.position(offset)
        assert pos is not None
        if wanted(g):
            for k in range(0, len(g.wire), 7):
                assert copied_stream[stream.position(offset + k)] == original[offset + k]
        assert stream.position(end) == pos + (len(g.wire) if wanted(g) else 0)
        offset = end
    assert stream.position(len(original)) == len(expected) == stream.copied


def test_a_gap_inside_a_held_head_keeps_the_held_bytes_and_the_hole_apart() -> None:
    stream = allow()
    assert stream.feed(0, b"GET /x HT") == []
    assert stream.feed(12, b"more") == [Chunk(0, b"GET /x HT"), Chunk(12, b"more")]
    assert stream.position(9) == 9 and stream.position(16) == 16


@settings(max_examples=100, deadline=None)
@given(st.lists(requests(), max_size=4), st.binary(min_size=1, max_size=60),
       st.sampled_from(("copy", "skip")), st.data())
def test_a_garbage_tail_follows_on_unparsable(gen: list, junk: bytes, rule: str,
                                              data: st.DataObject) -> None:
    stream = SelectedStream(Selection.from_flags([("--allow-method", "GET")],
                                                 on_unparsable=rule, non_http=rule))
    original = b"".join(g.wire for g in gen) + b"\x00" + junk     # NUL: never a request
    chunks = feed(stream, data.draw(segmented(original)))
    kept = b"".join(g.wire for g in gen if g.method == "GET")
    assert joined(chunks) == kept + (b"\x00" + junk if rule == "copy" else b"")
    assert stream.decided == len(original)
    assert stream.position(len(original)) == stream.copied
