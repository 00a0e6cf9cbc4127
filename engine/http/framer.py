"""An incremental HTTP/1.x request framer for ONE client->server byte stream, sans-I/O.

``RequestFramer.feed(data) -> [Piece]`` cuts the stream into consecutive pieces. A piece is a
run of stream bytes ``[start, start + len(data))`` that belongs to one *unit*: a ``Request``
(its head, then its body as it streams by) or an ``Opaque`` remainder (the rest of the
connection once it cannot be framed). ``done`` marks a request's last piece. Every byte fed is
in exactly one piece, in order, once: joining the pieces' data gives back the stream (minus
bytes still held, see ``pending``). Feeding the same stream in any segmentation gives the same
units and the same bytes per unit.

Framing (RFC 9112): the request line and header fields are held until the empty line (at most
``max_head`` bytes, default 64 KiB); then the body is ``Transfer-Encoding: chunked`` (chunk
extensions and trailers allowed; chunked wins over Content-Length), else ``Content-Length``
(duplicates must agree), else empty. ``Expect: 100-continue`` changes nothing (the body still
follows) and is recorded. Empty lines before a request line are tolerated and belong to it.

The first bytes decide whether the stream is HTTP/1.x: a method token, SP, a request-target,
SP, ``HTTP/1.x``; anything else makes the whole stream one ``Opaque`` with ``not_http`` set.
Later trouble (a head larger than ``max_head``, a bad request line or header field, a bad or
conflicting Content-Length, a Transfer-Encoding not ending in chunked, a bad chunk size, the
HTTP/2 preface) turns the rest of the stream into one ``Opaque`` with a ``reason``. After a
request that switches protocols (``Upgrade`` header or ``CONNECT``) the rest of the stream is
an ``Opaque`` tunnel that names that request. ``feed`` never raises on any input; memory held
is at most ``max_head`` bytes plus a small constant: bodies pass through as slices of the fed
data and are never accumulated.
"""

from __future__ import annotations

import re
from typing import List, NamedTuple, Optional, Tuple, Union

DEFAULT_MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096           # a chunk-size line with its extensions

NOT_HTTP = "not-http"
OVERSIZED_HEAD = "oversized-head"
BAD_REQUEST_LINE = "bad-request-line"
BAD_HEADER = "bad-header"
BAD_CONTENT_LENGTH = "bad-content-length"
UNSUPPORTED_TRANSFER_ENCODING = "unsupported-transfer-encoding"
BAD_CHUNK = "bad-chunk"
HTTP2_PREFACE = "http2-preface"
UPGRADE = "upgrade"
GAP = "gap"                     # the caller lost bytes of the stream (abandon)
TRUNCATED = "truncated"         # the stream ended inside a head (abandon at FIN)

NONE, LENGTH, CHUNKED = "none", "length", "chunked"     # body framing kinds

_TCHAR = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_REQUEST_LINE = re.compile(
    rb"(" + _TCHAR + rb"+) ([^\x00-\x20\x7f]+) HTTP/1\.([0-9])\r?\n")
_METHOD_PREFIX = re.compile(_TCHAR + rb"{1,32}(?: |\Z)")   # can these bytes start a request?
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n"
_LEADING_EOL = re.compile(rb"[\r\n]*")
_END_OF_HEAD = re.compile(rb"\n\r?\n")
_TCHAR_STR = _TCHAR.decode("ascii")
_FIELD_BLOCK = re.compile(r"(?:" + _TCHAR_STR + r"+:[^\r\n]*\r?\n)*\r?\n\Z")
_FIELD = re.compile(r"(" + _TCHAR_STR + r"+):[ \t]*([^\r\n]*?)[ \t]*\r?\n")
_FRAMING_FIELDS = frozenset(("transfer-encoding", "content-length", "expect", "upgrade"))
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n\Z")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")


class Request(NamedTuple):
    """One request's head, parsed. ``headers`` are (lower-case name, value) in order."""

    number: int                 # 0 for the stream's first request
    start: int                  # stream offset of its first byte (leading empty lines included)
    head_length: int            # bytes from ``start`` to the end of the empty line
    method: str
    target: str                 # as sent (origin-form, absolute-form, authority or "*")
    version: str                # "1.1", "1.0"
    headers: Tuple[Tuple[str, str], ...]
    body: str                   # NONE, LENGTH or CHUNKED
    content_length: Optional[int]   # LENGTH only
    expect_continue: bool
    upgrade: bool               # Upgrade header or CONNECT: the stream leaves HTTP/1.x after it

    def header(self, name: str) -> Optional[str]:
        """All values of field ``name`` (any case) joined by ", ", or None."""
        key = name.lower()
        values = [v for k, v in self.headers if k == key]
        return ", ".join(values) if values else None

    @property
    def host(self) -> str:
        """The host, lower case, without port or trailing dot ("" if none): from an
        absolute-form target, else the first Host field."""
        hostport = ""
        if "://" in self.target:
            hostport = self.target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        else:
            hostport = next((v for k, v in self.headers if k == "host"), "")
        hostport = hostport.rsplit("@", 1)[-1].strip().lower()
        if hostport.startswith("["):                        # IPv6 literal
            return hostport.split("]", 1)[0] + "]"
        return hostport.split(":", 1)[0].rstrip(".")

    @property
    def origin_target(self) -> str:
        """The target in origin form (path and query): absolute-form is cut to its path."""
        if "://" in self.target:
            rest = self.target.split("://", 1)[1]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
            return "/" if cut < 0 else ("/" + rest[cut:] if rest[cut] == "?" else rest[cut:])
        return self.target

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        return self.origin_target.split("?", 1)[0]


class Opaque(NamedTuple):
    """The rest of the stream from ``start`` on, which is not framed."""

    start: int
    reason: str                 # NOT_HTTP, OVERSIZED_HEAD, BAD_CHUNK, UPGRADE, …
    tunnel_of: Optional[Request] = None     # UPGRADE: the request that switched protocols

    @property
    def not_http(self) -> bool:
        """The stream's first bytes were not HTTP/1.x (nothing in it was ever framed)."""
        return self.reason in (NOT_HTTP, HTTP2_PREFACE) and self.start == 0


Unit = Union[Request, Opaque]


class Piece(NamedTuple):
    """Stream bytes ``[start, start + len(data))``, all of one unit."""

    start: int
    data: bytes
    unit: Unit
    done: bool                  # the unit's last bytes (requests only)


class _Bad(Exception):
    """Internal: the stream cannot be framed from here on (never escapes ``feed``)."""


_HEAD, _LENGTH, _CHUNK_LINE_STATE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _TUNNEL, _OPAQUE = range(8)


class RequestFramer:
    """Frames one client->server stream; see the module docstring."""

    def __init__(self, max_head: int = DEFAULT_MAX_HEAD) -> None:
        if max_head < 64:
            raise ValueError(f"max_head must be at least 64 bytes, not {max_head}")
        self.max_head = max_head
        self.requests = 0           # request heads framed
        self.opaque: Optional[Opaque] = None
        self._state = _HEAD
        self._pending = bytearray()  # unattributed bytes (an incomplete head or chunk line)
        self._offset = 0            # stream offset just past the bytes fed so far
        self._unit: Optional[Request] = None
        self._remaining = 0         # body bytes left (LENGTH, CHUNK_DATA)
        self._trailer = 0           # trailer bytes seen (bounded by max_head)
        self._scan = 0              # bytes of a held head already searched for its end
        self._tunnel_of: Optional[Request] = None

    @property
    def offset(self) -> int:
        """The stream offset just past everything fed."""
        return self._offset

    @property
    def pending(self) -> int:
        """Bytes fed but held (not in any piece yet): at most ``max_head`` + a constant."""
        return len(self._pending)

    def abandon(self, reason: str) -> List[Piece]:
        """Stop framing: the held bytes and everything fed later are an ``Opaque``."""
        if self._state == _OPAQUE:
            return []
        start = self._offset - len(self._pending)
        held, self._pending = bytes(self._pending), bytearray()
        self._go_opaque(start, reason)
        return [Piece(start, held, self._opaque_unit(), False)] if held else []

    def feed(self, data: bytes) -> List[Piece]:
        """Frame the next ``data`` bytes of the stream; returns the pieces completed by them."""
        if not data:
            return []
        if self._state == _OPAQUE:
            start = self._offset
            self._offset += len(data)
            return [Piece(start, bytes(data), self._opaque_unit(), False)]
        if self._pending:
            self._pending += data
            buf: Union[bytes, bytearray] = self._pending
        else:
            buf = bytes(data)
        base = self._offset - (len(buf) - len(data))
        self._offset += len(data)
        out: List[Piece] = []
        try:
            i, run = self._run(buf, base, out)
        except _Bad as bad:
            i, reason = bad.args
            run = out[-1].start + len(out[-1].data) - base if out else 0
            if i > run and self._unit is not None:
                out.append(Piece(base + run, bytes(buf[run:i]), self._unit, False))
            self._go_opaque(base + i, reason, self._tunnel_of if reason == UPGRADE else None)
            out.append(Piece(base + i, bytes(buf[i:]), self._opaque_unit(), False))
            self._pending = bytearray()
            return [p for p in out if p.data]
        if i > run and self._unit is not None:
            out.append(Piece(base + run, bytes(buf[run:i]), self._unit, False))
            run = i
        if run == 0 and buf is self._pending:
            return out                      # nothing consumed: keep the held bytes as they are
        self._pending = bytearray(buf[run:])
        return out

    # ------------------------------------------------------------------ the state machine

    def _run(self, buf: Union[bytes, bytearray], base: int, out: List[Piece]) -> Tuple[int, int]:
        """Consume ``buf`` from 0; returns (i, run): consumed up to i, bytes from run on not
        yet in a piece. Raises ``_Bad(i, reason)`` when the stream cannot be framed from i on
        (the bytes before i that are not in ``out`` yet belong to the current request)."""
        i = run = 0
        n = len(buf)
        while i < n:
            state = self._state
            if state == _HEAD:
                end = self._head(buf, i, base)
                if end < 0:
                    return i, run
                i = end
                if self._state == _HEAD:       # no body: the request is complete
                    run = self._complete(buf, base, run, i, out)
            elif state in (_LENGTH, _CHUNK_DATA):
                take = min(self._remaining, n - i)
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    if state == _CHUNK_DATA:
                        self._state = _CHUNK_CRLF
                    else:
                        run = self._complete(buf, base, run, i, out)
            elif state == _CHUNK_LINE_STATE:
                lf = buf.find(b"\n", i, i + MAX_CHUNK_LINE)
                if lf < 0:
                    if n - i >= MAX_CHUNK_LINE:
                        raise _Bad(i, BAD_CHUNK)
                    return i, run
                m = _CHUNK_LINE.match(buf, i, lf + 1)
                if m is None:
                    raise _Bad(i, BAD_CHUNK)
                i = lf + 1
                size = int(m.group(1), 16)
                if size:
                    self._state, self._remaining = _CHUNK_DATA, size
                else:
                    self._state, self._trailer = _TRAILER, 0
            elif state == _CHUNK_CRLF:
                if buf[i] == 10:
                    i += 1
                elif buf[i] != 13:
                    raise _Bad(i, BAD_CHUNK)
                elif i + 1 == n:
                    return i, run
                elif buf[i + 1] == 10:
                    i += 2
                else:
                    raise _Bad(i, BAD_CHUNK)
                self._state = _CHUNK_LINE_STATE
            elif state == _TRAILER:
                lf = buf.find(b"\n", i)
                if lf < 0:
                    if self._trailer + n - i > self.max_head:
                        raise _Bad(i, OVERSIZED_HEAD)
                    return i, run
                line_end = lf + 1
                self._trailer += line_end - i
                if self._trailer > self.max_head:
                    raise _Bad(i, OVERSIZED_HEAD)
                empty = line_end - i <= 2 and buf[i] in (13, 10)
                i = line_end
                if empty:
                    run = self._complete(buf, base, run, i, out)
            else:                                   # _TUNNEL: after an upgrade request
                raise _Bad(i, UPGRADE)
        return i, run

    def _complete(self, buf: Union[bytes, bytearray], base: int, run: int, i: int,
                  out: List[Piece]) -> int:
        """The current request ends at i: its last piece; returns the new run start."""
        unit = self._unit
        assert unit is not None
        out.append(Piece(base + run, bytes(buf[run:i]), unit, True))
        self._unit = None
        self._state = _HEAD
        if unit.upgrade:
            self._state, self._tunnel_of = _TUNNEL, unit
        return i

    def _go_opaque(self, start: int, reason: str, tunnel_of: Optional[Request] = None) -> None:
        self._state = _OPAQUE
        self._unit = None
        self.opaque = Opaque(start, reason, tunnel_of)

    def _opaque_unit(self) -> Opaque:
        assert self.opaque is not None
        return self.opaque

    def _head(self, buf: Union[bytes, bytearray], i: int, base: int) -> int:
        """Parse a request head at ``buf[i:]``; returns the index after it, or -1 if it is not
        all there yet. Sets the state for the body and ``self._unit``."""
        h = _LEADING_EOL.match(buf, i).end()   # type: ignore[union-attr]
        first = self.requests == 0
        if h < len(buf) and _METHOD_PREFIX.match(buf, h, h + 33) is None:
            raise _Bad(i, NOT_HTTP if first else BAD_REQUEST_LINE)
        m = _END_OF_HEAD.search(buf, max(h, i + self._scan - 2))
        if m is None or m.start() < h:
            if len(buf) - i > self.max_head:
                raise _Bad(i, OVERSIZED_HEAD)
            self._check_request_line(buf, i, h, first)
            self._scan = len(buf) - i
            return -1
        self._scan = 0
        end = m.end()
        if end - i > self.max_head:
            raise _Bad(i, OVERSIZED_HEAD)
        self._unit = self._parse(buf, i, h, end, base, first)
        return end

    def _check_request_line(self, buf: Union[bytes, bytearray], i: int, h: int,
                            first: bool) -> None:
        """Decide early on a complete first line that is not a request line."""
        lf = buf.find(b"\n", h)
        if lf >= 0 and _REQUEST_LINE.match(buf, h, lf + 1) is None:
            raise _Bad(i, self._line_reason(buf, h, first))

    @staticmethod
    def _line_reason(buf: Union[bytes, bytearray], h: int, first: bool) -> str:
        if buf.startswith(_HTTP2_PREFACE, h):
            return HTTP2_PREFACE
        return NOT_HTTP if first else BAD_REQUEST_LINE

    def _parse(self, buf: Union[bytes, bytearray], i: int, h: int, end: int, base: int,
               first: bool) -> Request:
        line = _REQUEST_LINE.match(buf, h, end)
        if line is None:
            raise _Bad(i, self._line_reason(buf, h, first))
        headers = _fields(buf[line.end():end].decode("latin-1"), i)
        te, lengths, expect, upgrade = [], [], False, False
        for k, v in headers:
            if k in _FRAMING_FIELDS:
                if k == "transfer-encoding":
                    te.append(v)
                elif k == "content-length":
                    lengths.append(v)
                elif k == "expect":
                    expect = expect or v.lower() == "100-continue"
                else:
                    upgrade = True
        method = line.group(1).decode("ascii")
        body, length = NONE, None
        if te:
            codings = [c.strip().lower() for c in ",".join(te).split(",") if c.strip()]
            if not codings or codings[-1] != "chunked" or codings.count("chunked") != 1:
                raise _Bad(i, UNSUPPORTED_TRANSFER_ENCODING)
            body = CHUNKED
            self._state = _CHUNK_LINE_STATE
        elif lengths:
            body, length = LENGTH, _content_length(lengths, i)
            if length:
                self._state, self._remaining = _LENGTH, length
        upgrade = upgrade or method == "CONNECT"
        self.requests += 1
        return Request(self.requests - 1, base + i, end - i, method,
                       line.group(2).decode("latin-1"), "1." + line.group(3).decode("ascii"),
                       headers, body, length, expect, upgrade)


def _fields(block: str, i: int) -> Tuple[Tuple[str, str], ...]:
    """The header block (latin-1 text, the empty line included) -> (lower-case name, value).
    A line that is not ``name: value`` (obs-fold included, as RFC 9112 allows) is BAD_HEADER."""
    if _FIELD_BLOCK.match(block) is None:
        raise _Bad(i, BAD_HEADER)
    return tuple([(name.lower(), value) for name, value in _FIELD.findall(block)])


def _content_length(values: List[str], i: int) -> int:
    parts = {p.strip() for v in values for p in v.split(",")}
    if len(parts) != 1:
        raise _Bad(i, BAD_CONTENT_LENGTH)
    (value,) = parts
    if _DIGITS.match(value.encode("latin-1")) is None:
        raise _Bad(i, BAD_CONTENT_LENGTH)
    return int(value)
