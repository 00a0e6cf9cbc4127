"""engine.rawsock.ring: the TPACKET_V3 block/frame walker over a synthetic ring (an anonymous
mmap, as the socket's ring is an mmap; no kernel socket), and the ``--capture-ring-mb`` flag of
both daemons."""

from __future__ import annotations

import mmap
import struct
from typing import Any, List, Sequence, Tuple

import pytest

from engine import intercept, tcpcopy
from engine.intercept import UsageError, parse_args
from engine.options import OptionsError, parse_tcpcopy_args
from engine.rawsock.ring import (
    BLOCK_DESC_SIZE,
    FRAME_HDR_SIZE,
    REQ3,
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    RingReader,
    ring_request,
)

BLOCK = 4096
MAC = 82            # where the kernel puts the Ethernet header (after the header and sockaddr_ll)


def frame(i: int, size: int = 60) -> bytes:
    return bytes([i & 0xFF]) * size


def fill(buf: Any, block: int, frames: Sequence[bytes], status: int = TP_STATUS_USER,
         lengths: Sequence[int] = (), ifindexes: Sequence[int] = ()) -> List[int]:
    """Write one block as the kernel would: descriptor, then frames chained by tp_next_offset.
    ``lengths`` overrides tp_len (a longer wire length = a truncated frame), ``ifindexes`` the
    sockaddr_ll's interface (default 7). Returns the frame header offsets (in the block)."""
    base = block * BLOCK
    buf[base:base + BLOCK] = bytes(BLOCK)
    offs, off = [], BLOCK_DESC_SIZE
    for i, data in enumerate(frames):
        nxt = (MAC + len(data) + 15) & ~15
        wire = lengths[i] if i < len(lengths) else len(data)
        last = i == len(frames) - 1
        struct.pack_into("=IIIIIIHH", buf, base + off, 0 if last else nxt, 1, 2, len(data),
                         wire, 1, MAC, MAC + 14)
        # struct sockaddr_ll after the header: family, protocol, ifindex
        struct.pack_into("=HHi", buf, base + off + 48, 17, 8,
                         ifindexes[i] if i < len(ifindexes) else 7)
        buf[base + off + MAC:base + off + MAC + len(data)] = data
        offs.append(off)
        off += nxt
    # version 1, offset_to_priv, then block_status, num_pkts, offset_to_first_pkt, blk_len
    struct.pack_into("=IIIIII", buf, base, 1, BLOCK_DESC_SIZE, status, len(frames),
                     BLOCK_DESC_SIZE, off)
    return offs


def status(buf: Any, block: int) -> int:
    return int(struct.unpack_from("=I", buf, block * BLOCK + 8)[0])


def ring(blocks: int = 4) -> Tuple[mmap.mmap, RingReader]:
    buf = mmap.mmap(-1, BLOCK * blocks)
    return buf, RingReader(buf, BLOCK, blocks)


def test_frames_of_ready_blocks_in_order_and_blocks_released() -> None:
    buf, r = ring()
    fill(buf, 0, [frame(1), frame(2, 100)])
    fill(buf, 1, [frame(3, 1514)])
    got = r.read(64)
    assert got == [frame(1), frame(2, 100), frame(3, 1514)]
    assert all(type(f) is bytes for f in got)
    assert status(buf, 0) == status(buf, 1) == TP_STATUS_KERNEL
    assert r.block == 2 and r.blocks == 2
    assert r.read(64) == []                       # block 2 is still the kernel's


def test_limit_splits_a_block_which_is_released_only_when_read_whole() -> None:
    buf, r = ring()
    fill(buf, 0, [frame(i) for i in range(5)])
    assert r.read(2) == [frame(0), frame(1)]
    assert status(buf, 0) == TP_STATUS_USER and r.block == 0
    assert r.read(2) == [frame(2), frame(3)]
    assert r.read(10) == [frame(4)]
    assert status(buf, 0) == TP_STATUS_KERNEL and r.block == 1


def test_kernel_owned_block_stops_the_walk() -> None:
    buf, r = ring()
    fill(buf, 0, [frame(1)], status=TP_STATUS_KERNEL)
    fill(buf, 1, [frame(2)])                        # ready, but after a kernel-owned block
    assert r.read(64) == [] and r.block == 0


def test_wraps_around_the_ring() -> None:
    buf, r = ring(2)
    fill(buf, 0, [frame(1)])
    fill(buf, 1, [frame(2)])
    assert r.read(64) == [frame(1), frame(2)] and r.block == 0
    fill(buf, 0, [frame(3)])
    assert r.read(64) == [frame(3)] and r.block == 1


def test_frames_are_copies_the_kernel_may_overwrite() -> None:
    buf, r = ring()
    fill(buf, 0, [frame(7)])
    got = r.read(1)
    fill(buf, 0, [frame(9)])
    assert got == [frame(7)]


def test_truncated_frame_is_counted_and_skipped() -> None:
    buf, r = ring()
    fill(buf, 0, [frame(1), frame(2, 200), frame(3)], lengths=[60, 65000, 60])
    assert r.read(64) == [frame(1), frame(3)]
    assert r.truncated == 1 and status(buf, 0) == TP_STATUS_KERNEL


def test_frames_of_another_interface_are_skipped_when_bound() -> None:
    buf = mmap.mmap(-1, BLOCK * 2)
    fill(buf, 0, [frame(1), frame(2), frame(3)], ifindexes=[3, 7, 3])
    r = RingReader(buf, BLOCK, 2, ifindex=7)
    assert r.read(64) == [frame(2)] and r.foreign == 2
    fill(buf, 0, [frame(1), frame(2), frame(3)], ifindexes=[3, 7, 3])
    fill(buf, 1, [frame(4), frame(5)], ifindexes=[3, 7])
    assert RingReader(buf, BLOCK, 2).read(64) == [frame(1), frame(2), frame(3), frame(4),
                                                 frame(5)]


def test_empty_block_and_a_frame_chain_leaving_the_block_are_released() -> None:
    buf, r = ring()
    fill(buf, 0, [])
    offs = fill(buf, 1, [frame(1), frame(2), frame(3)])
    struct.pack_into("=I", buf, BLOCK + offs[0], BLOCK * 3)       # tp_next_offset out of range
    fill(buf, 2, [frame(4)])
    assert r.read(64) == [frame(1), frame(4)]
    assert r.bad_blocks == 1 and r.blocks == 3
    assert [status(buf, b) for b in range(3)] == [TP_STATUS_KERNEL] * 3


def test_frame_data_past_the_block_end_is_not_read() -> None:
    buf, r = ring()
    offs = fill(buf, 0, [frame(1)])
    struct.pack_into("=I", buf, offs[0] + 12, BLOCK)              # tp_snaplen past the block
    struct.pack_into("=I", buf, offs[0] + 16, BLOCK)
    assert r.read(64) == [] and r.truncated == 1


def test_ring_request_and_buffer_size() -> None:
    req, block, nr = ring_request(64 << 20, 1 << 20, 2048, 1)
    assert (block, nr) == (1 << 20, 64)
    assert REQ3.unpack(req) == (1 << 20, 64, 2048, 512 * 64, 1, 0, 0)
    assert ring_request(1 << 20, 1 << 20, 2048, 1)[2] == 2       # never a single block
    with pytest.raises(ValueError):
        RingReader(bytearray(BLOCK), BLOCK, 2)
    assert FRAME_HDR_SIZE == BLOCK_DESC_SIZE == 48


# ---------------------------------------------------------------- --capture-ring-mb

BASE = ["-x", "80-10.77.1.20:80", "-s", "10.77.1.30"]


def test_capture_ring_flag_defaults_and_values() -> None:
    assert parse_tcpcopy_args(BASE).capture_ring_mb == 0          # recv() unless asked
    assert parse_tcpcopy_args([*BASE, "--capture-ring-mb", "256"]).capture_ring_mb == 256
    assert parse_tcpcopy_args([*BASE, "--capture-ring-mb", "32"]).capture_ring_mb == 32
    opts = parse_args(["-F", "tcp and src port 80"])
    assert opts is not None and opts.capture_ring_mb == 16        # intercept: header slots
    opts = parse_args(["-F", "tcp and src port 80", "--capture-ring-mb", "0"])
    assert opts is not None and opts.capture_ring_mb == 0
    opts = parse_args(["-F", "tcp and src port 80", "--capture-ring-mb", "256"])
    assert opts is not None and opts.capture_ring_mb == 256


@pytest.mark.parametrize("value", ["-1", "4097", "x", "1.5"])
def test_bad_capture_ring_values_name_the_flag(value: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionsError, match="--capture-ring-mb") as exc:
        parse_tcpcopy_args([*BASE, "--capture-ring-mb", value])
    assert "\n" not in str(exc.value)
    with pytest.raises(UsageError, match="--capture-ring-mb"):
        parse_args(["-F", "tcp", "--capture-ring-mb", value])
    assert tcpcopy.main([*BASE, "--capture-ring-mb", value]) == 2
    assert intercept.main(["-F", "tcp", "--capture-ring-mb", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("--capture-ring-mb" in line for line in err)


def test_capture_banner_one_line_per_kind() -> None:
    from types import SimpleNamespace

    from engine.rawsock import capture_banner
    ring = SimpleNamespace(block_nr=2048, block_size=128 << 10)
    caps = [SimpleNamespace(ifname="eth0", ring=ring, ring_bytes=256 << 20, ring_error=None),
            SimpleNamespace(ifname="eth1", ring=ring, ring_bytes=256 << 20, ring_error=None),
            SimpleNamespace(ifname="eth2", ring=None, ring_bytes=0, ring_error="no ring: x"),
            SimpleNamespace(ifname="eth3", ring=None, ring_bytes=0, ring_error="no ring: x")]
    assert capture_banner(caps) == [  # type: ignore[arg-type]
        "capture ring: TPACKET_V3, 256 MiB per socket (2048 blocks of 128 KiB, retire 4 ms) "
        "on eth0,eth1", "no ring: x"]
    plain = [SimpleNamespace(ifname=None, ring=None, ring_bytes=0, ring_error=None)]
    assert capture_banner(plain) == [  # type: ignore[arg-type]
        "capture with recv(), no ring (--capture-ring-mb 0) on all"]
