"""Capture sockets (Linux): AF_PACKET set-up, the BPF attach, the ``recv()`` or ring readers.

- ``CaptureSocket(ifname, program, ignore_outgoing=True, rcvbuf=64 MiB)``: an
  ``AF_PACKET/SOCK_RAW/ETH_P_ALL`` socket with the classic BPF ``program`` attached BEFORE bind
  (so no unfiltered frame is ever queued), ``PACKET_IGNORE_OUTGOING`` (never re-capture our own
  output, netns findings P10), non-blocking, and a TPACKET_V3 memory-mapped ring of
  ``ring_bytes`` (``engine.rawsock.ring`` walks it; with ``snap``, header-only TPACKET_V2
  slots, ``engine.rawsock.slots``; set up before bind; 0 or a refused ring: ``recv()`` with
  ``SO_RCVBUFFORCE``). ``recv_frames(limit)`` returns up to ``limit`` whole
  Ethernet frames; ``stats()`` returns cumulative (packets, drops) from ``PACKET_STATISTICS``
  (the kernel resets them on every read, so they are accumulated here; ``freezes`` too).
  ``capture_banner``/``capture_counters``: the daemons' start-up lines and counters.
- ``open_captures(ifnames|None, program, ...)``: one socket per interface; None = every
  interface that is up and not loopback (``interfaces.list_interfaces()``).
- ``join_fanout(sock, group_id, mode)``: joins a bound capture socket to a ``PACKET_FANOUT``
  group (``tcpcopy --workers N``: every worker's socket on an interface joins one group, mode
  hash + defrag, so all packets of a flow reach the same worker).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import socket
import struct
from typing import Dict, List, Optional, Sequence, Tuple, Union

from engine.bpf import Insn, with_snap
from engine.rawsock.interfaces import interface_index, list_interfaces
from engine.rawsock.ring import (
    PACKET_RX_RING,
    PACKET_VERSION,
    TPACKET_V3,
    RingReader,
    ring_request,
)
from engine.rawsock.slots import TPACKET_V2, SlotReader, slot_size, slots_request

ETH_P_ALL = 0x0003
SOL_PACKET = 263
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
FRAME_BUFFER = 262144            # GRO/GSO super-frames can exceed the MTU
DEFAULT_RING_BYTES = 256 << 20   # per capture socket; kernel memory, allocated at setup
# A V3 block is handed over when full or RING_RETIRE_MS after it was opened, so below
# block / retire bytes per second (32 MB/s) every block is closed by the timer, mostly empty,
# and what a stalled reader may fall behind is blocks x retire (256 MiB: 2048 x 4 ms = 8 s);
# above it, ring bytes / rate. recv() with its 64 MiB SO_RCVBUF (128 MiB of skb truesize)
# held 161k small frames (6.5 s at 25k frames/s). In the lab, 128 MiB with a 1 ms retire
# (1 s) lost 22k-30k frames of 120k at 5,000 connections/s, with 4 ms (4 s) none there but 45k
# at 7,500/s; 256 MiB with 4 ms 8 in 3 runs (recv() 0). A frame longer than a block (minus
# its 48-byte header and its 82-byte lead) is truncated: 128 KiB holds a 64 KiB GRO/GSO frame.
RING_BLOCK = 128 << 10
RING_RETIRE_MS = 4               # the most a captured frame waits in a partly filled block
RING_FRAME = 2048                # only has to divide the block (V3 frames are variable)


def attach_filter(sock: socket.socket, program: Sequence[Insn]) -> None:
    """Attach a classic BPF program (struct sock_fprog) to ``sock``. Raises OSError."""
    raw = b"".join(struct.pack("HBBI", c, jt, jf, k) for c, jt, jf, k in program)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class _RingRefused(OSError):
    """The kernel refused the capture ring (the message says why)."""


def _drain(sock: socket.socket) -> None:
    try:
        while True:
            sock.recv(1, socket.MSG_TRUNC)
    except OSError:
        pass


class CaptureSocket:
    """One filtered, non-blocking AF_PACKET capture socket bound to ``ifname`` (None = all).

    ``ring_bytes`` > 0: frames come from a TPACKET_V3 memory-mapped ring of about that size
    (set up before bind on a socket opened with protocol 0, which receives nothing before
    bind: nothing is queued or dropped while the kernel allocates the ring; all inside the
    constructor, so ``sock`` can still join a fanout group);
    if the kernel refuses the ring, ``ring_error`` says why and the socket falls back to
    ``recv()`` (the caller logs it). 0: ``recv()`` one frame per system call.

    ``snap`` > 0: ``program`` is made to keep only a frame's first ``snap`` bytes
    (``engine.bpf.with_snap``), and the ring is a TPACKET_V2 ring of slots that size
    (``engine.rawsock.slots``): frames come cut after their headers, at once, with no block
    timer. intercept captures so; tcpcopy needs whole frames.
    """

    def __init__(self, ifname: Optional[str], program: Sequence[Insn],
                 ignore_outgoing: bool = True, rcvbuf: int = 64 << 20,
                 ring_bytes: int = DEFAULT_RING_BYTES, snap: int = 0) -> None:
        self.ifname = ifname
        self.snap = snap
        if snap:
            program = with_snap(program, snap)
        self.ring: Optional[Union[RingReader, SlotReader]] = None
        self.ring_error: Optional[str] = None
        self._mmap: Optional[mmap.mmap] = None
        try:
            self.sock = self._open(program, ignore_outgoing, rcvbuf, ring_bytes)
        except _RingRefused as exc:
            # a fresh socket without the ring: a half set-up one (V3, ring) cannot go back
            self.ring_error = str(exc)
            self.sock = self._open(program, ignore_outgoing, rcvbuf, 0)
        self._buf = bytearray(FRAME_BUFFER)
        self._view = memoryview(self._buf)
        self._packets = 0
        self._drops = 0
        self._truncated = 0
        self.freezes = 0

    def _open(self, program: Sequence[Insn], ignore_outgoing: bool, rcvbuf: int,
              ring_bytes: int) -> socket.socket:
        # with the ring, protocol 0: the socket receives nothing until bind names ETH_P_ALL, so
        # nothing is queued (and dropped, and counted) while the kernel allocates the ring
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                             0 if ring_bytes else socket.htons(ETH_P_ALL))
        try:
            # a socket created with a protocol already receives; drain anything queued before
            # the filter was attached, then bind (attach-before-bind, findings §5)
            attach_filter(sock, program)
            sock.setblocking(False)
            _drain(sock)
            if ignore_outgoing:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            if ring_bytes:
                # before bind (allocating it takes tens of ms); the walker also skips any frame
                # of another interface, should one be there
                self._setup_ring(sock, ring_bytes,
                                 interface_index(self.ifname) if self.ifname else 0)
            else:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((self.ifname or "", ETH_P_ALL))
            _drain(sock)
        except BaseException:
            self._unmap()
            sock.close()
            raise
        return sock

    def _setup_ring(self, sock: socket.socket, ring_bytes: int, ifindex: int) -> None:
        if self.snap:
            size = slot_size(self.snap)
            req, frame_nr, _blocks = slots_request(ring_bytes, size)
            mem = self._map_ring(sock, TPACKET_V2, req, size * frame_nr, ring_bytes)
            self.ring = SlotReader(mem, size, frame_nr, ifindex)
            return
        req, block, block_nr = ring_request(ring_bytes, RING_BLOCK, RING_FRAME, RING_RETIRE_MS)
        mem = self._map_ring(sock, TPACKET_V3, req, block * block_nr, ring_bytes)
        self.ring = RingReader(mem, block, block_nr, ifindex)

    def _map_ring(self, sock: socket.socket, version: int, req: bytes, length: int,
                  ring_bytes: int) -> mmap.mmap:
        """Ask for a TPACKET ring (``version``, packed request) and map its ``length`` bytes."""
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, version)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._mmap = mmap.mmap(sock.fileno(), length, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            name = "TPACKET_V2" if version == TPACKET_V2 else "TPACKET_V3"
            raise _RingRefused(f"no {name} capture ring of {ring_bytes >> 20} MiB on "
                               f"{self.ifname or 'all'}: {exc.strerror or exc}; "
                               "capturing with recv()") from None
        return self._mmap

    def _unmap(self) -> None:
        self.ring = None
        if self._mmap is not None:
            with contextlib.suppress(BufferError, ValueError):
                self._mmap.close()
            self._mmap = None

    @property
    def ring_bytes(self) -> int:
        """Size of the mapped ring (0 without one)."""
        return self.ring.block_size * self.ring.block_nr if self.ring else 0

    def ring_resident_bytes(self) -> int:
        """An upper bound of the ring bytes touched so far (they count in the process's RSS)."""
        r = self.ring
        return min(r.blocks + 1, r.block_nr) * r.block_size if r else 0

    @property
    def truncated(self) -> int:
        """Frames too long for the buffer (recv) or the ring's block, skipped."""
        return self._truncated + (self.ring.truncated if self.ring else 0)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_frames(self, limit: int = 64) -> List[bytes]:
        """Up to ``limit`` frames, without blocking ([] when none is queued)."""
        if self.ring is not None:
            return self.ring.read(limit)
        frames: List[bytes] = []
        recv_into, view = self.sock.recv_into, self._view
        for _ in range(limit):
            try:
                n = recv_into(self._buf, FRAME_BUFFER, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            if n > FRAME_BUFFER:
                self._truncated += 1
                continue
            frames.append(bytes(view[:n]))
        return frames

    def stats(self) -> Tuple[int, int]:
        """Cumulative (packets, drops) as seen by the kernel since this socket was opened.

        With the ring the kernel answers ``tpacket_stats_v3``; its ``tp_freeze_q_cnt`` (times
        the ring was full) is accumulated in ``freezes``."""
        size = 12 if isinstance(self.ring, RingReader) else 8
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, size)
        except OSError:
            return self._packets, self._drops
        if len(raw) >= 12:
            packets, drops, freezes = struct.unpack_from("III", raw)
            self.freezes += freezes
        else:
            packets, drops = struct.unpack_from("II", raw)
        self._packets += packets
        self._drops += drops
        return self._packets, self._drops

    def close(self) -> None:
        self._unmap()
        self.sock.close()


def open_captures(ifnames: Optional[Sequence[str]], program: Sequence[Insn],
                  ignore_outgoing: bool = True, rcvbuf: int = 64 << 20,
                  ring_bytes: int = DEFAULT_RING_BYTES, snap: int = 0) -> List[CaptureSocket]:
    """One CaptureSocket per interface (None -> every up, non-loopback interface); each gets
    its own ring of ``ring_bytes`` (0 = recv()); ``snap``: see ``CaptureSocket``."""
    names = list(ifnames) if ifnames else list_interfaces()
    if not names:
        raise OSError(errno.ENODEV, "no capture interface (none up except loopback)")
    socks: List[CaptureSocket] = []
    try:
        for name in names:
            socks.append(CaptureSocket(name, program, ignore_outgoing, rcvbuf, ring_bytes,
                                       snap))
    except OSError as exc:
        for s in socks:
            s.close()
        raise OSError(exc.errno, f"capture on {name}: {exc.strerror}") from None
    return socks


def join_fanout(sock: socket.socket, group_id: int,
                mode: int = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) -> None:
    """Join the bound AF_PACKET ``sock`` to fanout group ``group_id`` (0..65535) of this network
    namespace: each packet then goes to ONE member socket of the group, chosen by ``mode``
    (hash: the flow's symmetric hash, so a flow always lands on the same member; defrag: IP
    fragments are reassembled first). All members must be bound alike (same interface and
    protocol) and use the same mode, else the kernel refuses with EINVAL. Raises OSError."""
    sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", (group_id & 0xFFFF) | (mode << 16)))


def capture_banner(caps: Sequence[CaptureSocket]) -> List[str]:
    """Start-up log lines: the ring of each capture socket, or why it has none (one line per
    distinct reason)."""
    lines: List[str] = []
    slots = [c for c in caps if isinstance(c.ring, SlotReader)]
    if slots:
        sr = slots[0].ring
        assert isinstance(sr, SlotReader)
        lines.append(f"capture ring: TPACKET_V2, {slots[0].ring_bytes >> 20} MiB per socket "
                     f"({sr.frame_nr} slots of {sr.frame_size} bytes, headers only: "
                     f"{slots[0].snap} bytes of each frame) on "
                     f"{','.join(c.ifname or 'all' for c in slots)}")
    rings = [c for c in caps if c.ring is not None and not isinstance(c.ring, SlotReader)]
    if rings:
        r = rings[0].ring
        assert r is not None
        lines.append(f"capture ring: TPACKET_V3, {rings[0].ring_bytes >> 20} MiB per socket "
                     f"({r.block_nr} blocks of {r.block_size >> 10} KiB, retire "
                     f"{RING_RETIRE_MS} ms) on {','.join(c.ifname or 'all' for c in rings)}")
    for reason in dict.fromkeys(c.ring_error for c in caps if c.ring_error):
        lines.append(str(reason))
    plain = [c for c in caps if c.ring is None and not c.ring_error]
    if plain:
        lines.append("capture with recv(), no ring (--capture-ring-mb 0) on "
                     + ",".join(c.ifname or "all" for c in plain))
    return lines


def capture_counters(caps: Sequence[CaptureSocket]) -> Dict[str, int]:
    """Kernel drops (PACKET_STATISTICS), frames truncated (too long to capture whole, skipped)
    and ring freezes (the ring was full), summed over ``caps``."""
    drops = sum(c.stats()[1] for c in caps)
    return {"kernel_drops": drops, "capture_truncated": sum(c.truncated for c in caps),
            "ring_freezes": sum(c.freezes for c in caps)}
