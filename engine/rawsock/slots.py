"""TPACKET_V2 receive ring of fixed slots, for header-only capture (intercept): layout
constants and a pure walker over the ring's memory.

The kernel writes each captured frame into the next slot of ``frame_nr`` slots of
``frame_size`` bytes (one ``mmap`` of the AF_PACKET socket, set up by
``engine.rawsock.capture``), and hands the slot over by setting ``TP_STATUS_USER`` in its
``struct tpacket2_hdr`` (tp_status, tp_len, tp_snaplen, tp_mac, tp_net, ...; 32 bytes, then a
``struct sockaddr_ll`` whose ``sll_ifindex`` names the interface). The reader takes the slots
in order and gives each back by writing ``TP_STATUS_KERNEL`` (0). Unlike the V3 blocks
(``engine.rawsock.ring``) a slot is handed over as soon as its frame is in: no block timer, so
no added latency and no ring that empties by the clock at low rates. A frame whose capture
was cut (``tp_snaplen < tp_len``: the kernel filter kept only the headers) is returned as cut;
that is the point of slots this small.

``SlotReader(buf, frame_size, frame_nr, ifindex=0, block_size=0)`` works on any writable
buffer (the mmap, or an anonymous one in the unit tests): ``read(limit)`` returns up to
``limit`` frames as ``bytes`` copies. A slot whose frame would leave the slot is skipped and
counted in ``bad_slots``; frames of another interface (a ring set up before bind) in
``foreign``.
"""

from __future__ import annotations

import struct
from typing import Any, List, Tuple

TPACKET_V2 = 1
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
SLOT_HDR_SIZE = 32              # struct tpacket2_hdr, TPACKET_ALIGN'ed
SLOT_LEAD = 96                  # what precedes a frame's bytes in its slot, rounded up (66
                                # for Ethernet: the header, the sockaddr_ll, the alignment)
SLOT_BLOCK = 64 << 10           # slots are allocated in blocks of this many bytes
# intercept's --capture-ring-mb default: 16 MiB of 256-byte slots hold 65,536 frames' headers
# (the C intercept gives libpcap 16 MiB too); the pages count in its RSS once cycled
INTERCEPT_RING_MB = 16

# tpacket_req: block_size, block_nr, frame_size, frame_nr
REQ = struct.Struct("=4I")
# tp_status, tp_len, tp_snaplen, tp_mac
SLOT_HDR = struct.Struct("=IIIH")
IFINDEX = struct.Struct("=i")   # sll_ifindex, at SLOT_HDR_SIZE + 4
_STATUS = struct.Struct("=I")


def slot_size(snap: int) -> int:
    """The slot that holds a frame's first ``snap`` bytes (a multiple of 16)."""
    return (SLOT_LEAD + snap + 15) & ~15


def slots_request(ring_bytes: int, frame_size: int,
                  block_size: int = SLOT_BLOCK) -> Tuple[bytes, int, int]:
    """(packed tpacket_req, frame_nr, block_nr) for a ring of about ``ring_bytes`` bytes."""
    block_nr = max(1, ring_bytes // block_size)
    frame_nr = block_size // frame_size * block_nr
    return REQ.pack(block_size, block_nr, frame_size, frame_nr), frame_nr, block_nr


class SlotReader:
    """Walks the slots of a TPACKET_V2 ring held in ``buf`` (see the module docstring)."""

    def __init__(self, buf: Any, frame_size: int, frame_nr: int, ifindex: int = 0,
                 block_size: int = SLOT_BLOCK) -> None:
        if frame_size < SLOT_HDR_SIZE + 8 or block_size % frame_size:
            raise ValueError(f"slot of {frame_size} bytes in blocks of {block_size}")
        if len(buf) < frame_size * frame_nr:
            raise ValueError(f"ring buffer of {len(buf)} bytes < {frame_nr} x {frame_size}")
        self.buf = buf
        self.frame_size = frame_size
        self.frame_nr = frame_nr
        self.block_size = block_size
        self.block_nr = frame_size * frame_nr // block_size
        self.slot = 0               # index of the slot read next
        self.released = 0           # slots read and given back
        self.truncated = 0          # never: a cut frame is what this ring is for
        self.bad_slots = 0          # slots whose frame would leave the slot (skipped)
        self.ifindex = ifindex      # frames of other interfaces are skipped (0: none is)
        self.foreign = 0            # frames skipped for their interface

    @property
    def blocks(self) -> int:
        """Blocks touched so far (their pages are resident)."""
        return min(self.block_nr, self.released * self.frame_size // self.block_size)

    def read(self, limit: int) -> List[bytes]:
        """Up to ``limit`` frames from the ready slots ([] when the next slot is the kernel's)."""
        frames: List[bytes] = []
        append = frames.append
        buf, size, nr = self.buf, self.frame_size, self.frame_nr
        unpack, release = SLOT_HDR.unpack_from, _STATUS.pack_into
        want_if = self.ifindex
        i = self.slot
        done = 0
        while done < limit:
            off = i * size
            status, _length, snap, mac = unpack(buf, off)
            if not status & TP_STATUS_USER:
                break
            start = off + mac
            if mac < SLOT_HDR_SIZE or start + snap > off + size:
                self.bad_slots += 1
            elif want_if and IFINDEX.unpack_from(buf, off + SLOT_HDR_SIZE + 4)[0] != want_if:
                self.foreign += 1
            else:
                append(buf[start:start + snap])
            release(buf, off, TP_STATUS_KERNEL)
            done += 1
            i += 1
            if i == nr:
                i = 0
        self.slot = i
        self.released += done
        return frames
