"""Per-request selection in front of the session emulator: the client's segments in the
original sequence space in, the copied stream's segments out (pure, no I/O).

With a selection (``--allow-path`` & co.), a copied connection carries only the selected
requests: ``ClientSelect`` puts the client's segments in order (parking out-of-order ones, like
the emulator does), frames and selects them (``engine.http.stream.SelectedStream``) and gives
back segments in the *copied* sequence space: ``base`` (the client's ISN + 1) plus the offset in
the copied stream. The target thus sees a clean connection with the same ISN as the client's,
whose bytes are the selected requests back to back; the client's FIN lands after the last
copied byte. One ``ClientSelect`` serves every replica (``-n``) of one client connection.

Pacing reads the client's ACK field (how many response bytes the client had online before
sending a request). The responses to skipped requests are never asked of the target, so they
are taken out of that count: a run of segments with one ACK value (one request, or pipelined
ones) that copied nothing adds its response size (the next ACK value minus its own) to
``shift``, which every later ACK field is lowered by.

Memory: bytes parked out of order and the framer's held header bytes are ``held``; the table
counts them against the session's buffer caps.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from engine.http.select import Selection
from engine.http.stream import SelectedStream
from engine.packets import FIN, PSH, RST
from engine.session.config import HALF, M32, OOO_MAX, RST_WINDOW

# an output segment: (seq in the copied space, flags, payload, client ACK field minus shift)
Out = Tuple[int, int, bytes, int]


class ClientSelect:
    """One client connection's selected stream; see the module docstring."""

    __slots__ = ("accounted", "base", "counters", "ended", "fin", "grp_cack", "grp_copied",
                 "parked", "parked_bytes", "shift", "stream")

    def __init__(self, selection: Selection, base: int, counters: Dict[str, int]) -> None:
        self.stream = SelectedStream(selection)
        self.base = base & M32              # sequence number of the stream's first byte
        self.counters = counters
        self.parked: Dict[int, Tuple[int, bytes, int]] = {}     # offset -> flags, data, ack
        self.parked_bytes = 0
        self.accounted = 0                  # ``held`` as last counted by the table
        self.shift = 0                      # response bytes of skipped requests (see above)
        self.grp_cack: Optional[int] = None
        self.grp_copied = False
        self.fin = False                    # the client's FIN went through
        self.ended = False                  # the client ended the stream (FIN or RST)

    @property
    def held(self) -> int:
        """Bytes held here: parked out-of-order segments and an incomplete request head."""
        return self.parked_bytes + self.stream.framer.pending

    @property
    def selected(self) -> bool:
        """Something was copied: the target connection is (or was) needed."""
        return self.stream.selected

    def copied_seq(self) -> int:
        """The copied stream's next sequence number (after the FIN once it went through)."""
        return (self.base + self.stream.copied + (1 if self.fin else 0)) & M32

    def feed(self, seq: int, ack: int, flags: int, payload: bytes) -> List[Out]:
        """One captured client segment (not a SYN); returns the copied-space segments to hand
        to each replica's emulator, in order. A segment that copies nothing still yields a
        pure ACK (it keeps the session alive and carries the handshake's third ACK)."""
        nxt = self.stream.received
        off = nxt + _signed((seq - self.base - nxt) & M32)
        if flags & RST:
            # believed only at or just past the next expected byte (as the emulator does)
            if off < nxt or off - nxt >= RST_WINDOW:
                self.counters["clt_rst_ignored"] += 1
                return []
            self.ended = True
            return [(self.copied_seq(), flags, b"", self._ack(ack))]
        if not payload and not flags & FIN:
            at = self.base if off == 0 else self.copied_seq()
            return [(at, flags, b"", self._ack(ack))]
        if off < 0:
            self.counters["clt_con_retrans"] += 1
            return []
        out: List[Out] = []
        if off > nxt:
            self._park(off, flags, payload, ack, out)
        else:
            if off + len(payload) <= nxt and not flags & FIN:
                self.counters["clt_con_retrans"] += 1
                return []
            self._take(off, flags, payload, ack, out)
            self._drain(out)
        if not out:
            out.append((self.copied_seq(), 0, b"", self._ack(ack)))
        return out

    # ------------------------------------------------------------------ internals

    def _ack(self, ack: int) -> int:
        return (ack - self.shift) & M32

    def _take(self, off: int, flags: int, payload: bytes, ack: int, out: List[Out]) -> None:
        """An in-order (or overlapping) segment: frame, select, map."""
        if self.fin:
            return
        grp = self.grp_cack
        if grp is None:
            self.grp_cack = ack
        elif ack != grp and payload:
            if not self.grp_copied:
                size = (ack - grp) & M32
                if size < HALF:
                    self.shift = (self.shift + size) & M32
            self.grp_cack = ack
            self.grp_copied = False
        stream = self.stream
        chunks = stream.feed(off, payload) if payload else []
        if flags & FIN:
            chunks += stream.close()
        cack = self._ack(ack)
        push = flags & PSH
        base = self.base
        for chunk in chunks:
            out.append(((base + chunk.offset) & M32, push, chunk.data, cack))
            self.grp_copied = True
        if flags & FIN:
            self.ended = True
            if stream.selected:
                end = stream.position(off + len(payload))
                at = stream.copied if end is None else end
                out.append(((base + at) & M32, FIN, b"", cack))
                self.fin = True

    def _park(self, off: int, flags: int, payload: bytes, ack: int, out: List[Out]) -> None:
        self.counters["clt_gap"] += 1
        parked = self.parked
        old = parked.get(off)
        self.parked_bytes += len(payload) - (len(old[1]) if old is not None else 0)
        parked[off] = (flags, payload, ack)
        if len(parked) > OOO_MAX:
            # the hole is not coming (a capture loss): go on after it, as a gap
            first = min(parked)
            self._unpark(first, out)
            self._drain(out)

    def _drain(self, out: List[Out]) -> None:
        parked = self.parked
        while parked:
            first = min(parked)
            if first > self.stream.received:
                return
            self._unpark(first, out)

    def _unpark(self, off: int, out: List[Out]) -> None:
        flags, payload, ack = self.parked.pop(off)
        self.parked_bytes -= len(payload)
        if off + len(payload) > self.stream.received or flags & FIN:
            self._take(off, flags, payload, ack, out)


def _signed(delta: int) -> int:
    return delta - (1 << 32) if delta >= HALF else delta
