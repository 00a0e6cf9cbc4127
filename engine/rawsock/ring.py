"""TPACKET_V3 receive ring: layout constants and a pure walker over the ring's memory.

The kernel fills a ring of ``block_nr`` blocks of ``block_size`` bytes (one ``mmap`` of the
AF_PACKET socket, set up by ``engine.rawsock.capture``). Each block starts with ``struct
tpacket_block_desc`` (version, offset_to_priv, then ``tpacket_hdr_v1``: block_status, num_pkts,
offset_to_first_pkt, blk_len, seq_num, two timestamps); the kernel hands a block to user space by
setting ``TP_STATUS_USER`` in block_status once it is full or its retire timer fired, and the
reader gives it back by writing ``TP_STATUS_KERNEL`` (0). Inside a block, frames are chained by
``struct tpacket3_hdr.tp_next_offset``; a frame's Ethernet header is at ``tp_mac`` from its
header and ``tp_snaplen`` bytes of it are in the ring (``tp_len`` on the wire: a frame longer than
the block's room has ``tp_snaplen < tp_len`` and is counted as truncated, not returned). The
``struct sockaddr_ll`` after the header names the interface (``sll_ifindex``): a reader set up
before its socket was bound skips frames of other interfaces (``ifindex``; 0 = any).

``RingReader(buf, block_size, block_nr, ifindex=0)`` works on any writable buffer (the mmap,
or an anonymous one in the unit tests): ``read(limit)`` returns up to ``limit`` frames as
``bytes`` copies (callers keep references), walking ready blocks in ring order and releasing
each block once all its frames were read. A block whose frame chain leaves the block is
released and counted in ``bad_blocks``.
"""

from __future__ import annotations

import struct
from typing import Any, List, Tuple

TPACKET_V3 = 2
PACKET_RX_RING = 5
PACKET_VERSION = 10
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_FT_REQ_FILL_RXHASH = 1
BLOCK_DESC_SIZE = 48            # struct tpacket_block_desc (with tpacket_hdr_v1)
FRAME_HDR_SIZE = 48             # struct tpacket3_hdr, TPACKET_ALIGN'ed
FRAME_LEAD = 68                 # the header and the struct sockaddr_ll after it

# tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov, sizeof_priv,
# feature_req_word
REQ3 = struct.Struct("=7I")
# block_status, num_pkts, offset_to_first_pkt (at offset 8 of the block)
BLOCK_HDR = struct.Struct("=III")
# tp_next_offset, (tp_sec, tp_nsec), tp_snaplen, tp_len, (tp_status), tp_mac, (tp_net, the
# rest of the header, sll_family, sll_protocol), sll_ifindex
FRAME_HDR = struct.Struct("=I8xII4xH26xi")
_STATUS = struct.Struct("=I")

# Both daemons' --capture-ring-mb. The default is recv() (0): its 64 MiB SO_RCVBUF is taken
# only when frames queue, and held a stalled reader's frames for seconds, where a ring is
# allocated in full up front and, at 32 MiB, overflowed in the lab when a loaded box stalled
# the daemon (kernel_drops, then a keep-alive session lost to the gap; BENCHMARKS.md). Paced
# at 1,000 req/s a ring halves the CPU per request: opt in where CPU matters more.
DEFAULT_CAPTURE_RING_MB = 0
MAX_CAPTURE_RING_MB = 4096


def ring_request(ring_bytes: int, block_size: int, frame_size: int,
                 retire_ms: int) -> Tuple[bytes, int, int]:
    """(packed tpacket_req3, block_size, block_nr) for a ring of about ``ring_bytes`` bytes.

    ``frame_size`` only has to divide the block (V3 frames are variable-sized); the kernel
    checks ``frame_nr == block_size // frame_size * block_nr``.
    """
    block_nr = max(2, ring_bytes // block_size)
    frame_nr = block_size // frame_size * block_nr
    req = REQ3.pack(block_size, block_nr, frame_size, frame_nr, retire_ms, 0, 0)
    return req, block_size, block_nr


class RingReader:
    """Walks the blocks of a TPACKET_V3 ring held in ``buf`` (see the module docstring)."""

    def __init__(self, buf: Any, block_size: int, block_nr: int, ifindex: int = 0) -> None:
        if len(buf) < block_size * block_nr:
            raise ValueError(f"ring buffer of {len(buf)} bytes < {block_nr} x {block_size}")
        self.buf = buf
        self.block_size = block_size
        self.block_nr = block_nr
        self.block = 0              # index of the block read next (ring order)
        self._left = 0              # frames not yet read in the current (user-owned) block
        self._next = 0              # absolute offset of the next frame header
        self.truncated = 0          # frames with tp_snaplen < tp_len (not returned)
        self.bad_blocks = 0         # blocks whose frame chain left the block (released)
        self.ifindex = ifindex      # frames of other interfaces are skipped (0: none is)
        self.foreign = 0            # frames skipped for their interface
        self.blocks = 0             # blocks read and released

    def _release(self) -> None:
        _STATUS.pack_into(self.buf, self.block * self.block_size + 8, TP_STATUS_KERNEL)
        self.blocks += 1
        self.block = (self.block + 1) % self.block_nr
        self._left = 0

    def read(self, limit: int) -> List[bytes]:
        """Up to ``limit`` frames from the ready blocks ([] when the next block is the kernel's)."""
        frames: List[bytes] = []
        append = frames.append
        buf, bsize = self.buf, self.block_size
        unpack = FRAME_HDR.unpack_from
        want_if = self.ifindex
        want = limit
        while want > 0:
            if not self._left:
                base = self.block * bsize
                status, num, first = BLOCK_HDR.unpack_from(buf, base + 8)
                if not status & TP_STATUS_USER:
                    break
                if not num:
                    self._release()
                    continue
                self._left, self._next = num, base + first
            base = self.block * bsize
            end = base + bsize
            off = self._next
            count = self._left if self._left < want else want
            truncated = foreign = 0
            bad = False
            for _ in range(count):
                if not base < off <= end - FRAME_LEAD:
                    bad = True
                    break
                nxt, snap, length, mac, ifindex = unpack(buf, off)
                start = off + mac
                if snap < length or start + snap > end:
                    truncated += 1
                elif want_if and ifindex != want_if:
                    foreign += 1
                else:
                    append(buf[start:start + snap])
                off += nxt
            self.truncated += truncated
            self.foreign += foreign
            if bad:
                self.bad_blocks += 1
                want = limit - len(frames)
                self._release()
                continue
            self._left -= count
            self._next = off
            if not self._left:
                self._release()
            want = limit - len(frames)
        return frames
