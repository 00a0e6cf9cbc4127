"""One client->server stream with per-request selection: original bytes in, copied bytes out.

``SelectedStream.feed(offset, payload)`` takes the client's payload segments in stream order
(offset 0 = the byte after the SYN; retransmitted bytes are trimmed) and returns what to send
to the target as ``Chunk(offset, data)`` in the *copied* stream, which is the concatenation of
the selected requests' bytes (and of copied opaque remainders). Copied bytes are contiguous in
the copied stream, so a call returns at most one chunk (two when a gap is kept as a hole).

The mapping the session applies to sequence numbers is ``position(orig)``: how many copied bytes
come before original offset ``orig``. For a copied byte that is its offset in the copied stream;
for the end of the stream (the client's FIN) it is the copied length. It is exact for every
offset in ``[history_start, decided]``: ``decided`` is how far the framer has attributed bytes
(bytes of an incomplete head are held, at most ``max_head``). Bodies of skipped requests are
dropped as they stream by, never held.

``selected`` turns True with the first copied byte: until then the target need not be
contacted (a connection with nothing selected is never opened). A gap in the client's
sequence (a segment missing from the capture) ends framing: the rest is an opaque remainder
(``GAP``) decided by ``--on-unparsable``; if copied, the copied stream has the same hole.
"""

from __future__ import annotations

import bisect
from typing import List, NamedTuple, Optional

from engine.http.framer import (
    DEFAULT_MAX_HEAD,
    GAP,
    TRUNCATED,
    Opaque,
    Piece,
    Request,
    RequestFramer,
)
from engine.http.select import Decision, Selection

MAX_RUNS = 256      # copied runs remembered for position() (older offsets answer None)


class Chunk(NamedTuple):
    offset: int     # in the copied stream
    data: bytes


class SelectedStream:
    """Frames one client stream and keeps the selected requests; see the module docstring."""

    def __init__(self, selection: Selection, max_head: int = DEFAULT_MAX_HEAD) -> None:
        self.selection = selection
        self.framer = RequestFramer(max_head)
        self.copied = 0                 # length of the copied stream so far
        self.skipped = 0                # original bytes left out so far
        self._next = 0                  # original offset expected next
        self._unit: object = None       # the unit of the last piece, and its decision
        self._decision = Decision(True, "")
        self._request: Optional[Request] = None     # the last request, and its decision
        self._request_decision = Decision(True, "")
        # copied runs: original start, original end, copied start (adjacent runs merged)
        self._starts: List[int] = []
        self._ends: List[int] = []
        self._copied_starts: List[int] = []
        self._forgotten = 0             # original offsets below this are no longer mapped
        self._gap_from: Optional[int] = None

    @property
    def selected(self) -> bool:
        """Something was copied: the target connection is needed."""
        return self.copied > 0

    @property
    def decided(self) -> int:
        """Original offset up to which every byte is known to be copied or skipped."""
        if self._gap_from is not None:
            return self._next
        return self._next - self.framer.pending

    @property
    def received(self) -> int:
        """Original offset expected next (everything before it was fed or was a gap)."""
        return self._next

    @property
    def history_start(self) -> int:
        return self._forgotten

    def feed(self, offset: int, payload: bytes) -> List[Chunk]:
        """The client's payload at original stream ``offset``; returns what to copy."""
        end = offset + len(payload)
        if end <= self._next:
            return []                                   # a retransmission of what we have
        if offset < self._next:
            payload, offset = payload[self._next - offset:], self._next
        out: List[Chunk] = []
        if offset > self._next:
            self._gap(offset, out)
        self._next = end
        if self._gap_from is not None:
            self._take([Piece(offset, bytes(payload), self._unit_of_gap(), False)], out)
        else:
            self._take(self.framer.feed(payload), out)
        return out

    def close(self) -> List[Chunk]:
        """The client closed (FIN): held bytes of an incomplete head are decided now, as an
        unparsable remainder (``TRUNCATED``). After this ``decided`` is the stream's end."""
        out: List[Chunk] = []
        self._take(self.framer.abandon(TRUNCATED), out)
        return out

    def position(self, orig: int) -> Optional[int]:
        """Copied bytes before original offset ``orig`` (None outside the known range)."""
        if orig < self._forgotten or orig > self.decided:
            return None
        k = bisect.bisect_right(self._starts, orig) - 1
        if k < 0:
            return 0
        return self._copied_starts[k] + min(orig, self._ends[k]) - self._starts[k]

    # ------------------------------------------------------------------ internals

    def _take(self, pieces: List[Piece], out: List[Chunk]) -> None:
        """Decide each piece's unit (once per unit) and append the copied bytes to ``out``
        (one chunk: copied bytes are contiguous in the copied stream)."""
        start, parts = self.copied, []
        for piece in pieces:
            unit = piece.unit
            if unit is not self._unit:
                self._unit, self._decision = unit, self._decide(unit)
            size = len(piece.data)
            if not self._decision.copy:
                self.skipped += size
                continue
            parts.append(piece.data)
            self._add_run(piece.start, size)
            self.copied += size
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if out and out[-1].offset + len(out[-1].data) == start:
            last = out.pop()
            out.append(Chunk(last.offset, last.data + data))
        else:                                   # the first, or after a gap's hole
            out.append(Chunk(start, data))

    def _decide(self, unit: object) -> Decision:
        if isinstance(unit, Request):
            self._request, self._request_decision = unit, self.selection.decide(unit)
            return self._request_decision
        assert isinstance(unit, Opaque)
        tunnel = self._request_decision if unit.tunnel_of is self._request else None
        return self.selection.decide_opaque(unit, tunnel)

    def _add_run(self, start: int, size: int) -> None:
        if self._ends and self._ends[-1] == start:
            self._ends[-1] = start + size
            return
        self._starts.append(start)
        self._ends.append(start + size)
        self._copied_starts.append(self.copied)
        if len(self._starts) > MAX_RUNS:
            self._forgotten = self._ends[0]
            del self._starts[0], self._ends[0], self._copied_starts[0]

    def _gap(self, offset: int, out: List[Chunk]) -> None:
        """Bytes [self._next, offset) never arrived: framing ends here."""
        if self._gap_from is None:
            self._take(self.framer.abandon(GAP), out)
            self._gap_from = self._next
        held = self._unit_of_gap()
        if self._unit is not held:
            self._unit, self._decision = held, self._decide(held)
        if self._decision.copy:                 # the hole is kept in the copied stream
            self._add_run(self._next, offset - self._next)
            self.copied += offset - self._next
        else:
            self.skipped += offset - self._next

    def _unit_of_gap(self) -> Opaque:
        opaque = self.framer.opaque
        assert opaque is not None
        return opaque
