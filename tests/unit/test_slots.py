"""engine.rawsock.slots: the TPACKET_V2 slot walker over a synthetic ring (an anonymous mmap,
as the socket's ring is an mmap; no kernel socket); ``engine.bpf.with_snap``; intercept's
header-only frames (``fields(cut=True)``, ``classify_frame``)."""

from __future__ import annotations

import mmap
import struct
from typing import Any

import pytest

from engine.bpf import ACCEPT, RET, RET_A, BpfError, run_filter, tcp_port_filter, with_snap
from engine.header import PacketError, fields
from engine.packets import ACK, PSH, build_ethernet, ip_aton
from engine.protocol import make_record
from engine.rawsock.slots import (
    REQ,
    SLOT_BLOCK,
    SLOT_HDR_SIZE,
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    SlotReader,
    slot_size,
    slots_request,
)
from engine.router import HEADER_SNAP, classify_frame
from engine.session.packets import build_packet, payload_sum

SIZE = 256
MAC = 66            # where the kernel puts an Ethernet frame in a V2 slot


def put(buf: Any, slot: int, data: bytes, wire: int = 0, ifindex: int = 7,
        status: int = TP_STATUS_USER, mac: int = MAC) -> None:
    """Write one slot as the kernel would: tpacket2_hdr, sockaddr_ll, the frame's bytes."""
    off = slot * SIZE
    buf[off:off + SIZE] = bytes(SIZE)
    struct.pack_into("=IIIHH", buf, off, status, wire or len(data), len(data), mac, mac + 14)
    struct.pack_into("=HHi", buf, off + SLOT_HDR_SIZE, 17, 8, ifindex)
    buf[off + mac:off + mac + len(data)] = data


def eth_frame(sport: int, dport: int, payload: bytes = b"", flags: int = ACK) -> bytes:
    """An Ethernet frame of the target's answer to a fake client (TCP timestamps on)."""
    opts = b"\x01\x01\x08\x0a" + struct.pack("!II", 1000, 2000)
    ip = build_packet(ip_aton("10.77.1.20"), ip_aton("10.79.1.7"), 1, sport, dport, 5, 9, flags,
                      512, opts, payload, payload_sum(payload))
    return build_ethernet(b"\x02" * 6, b"\x04" * 6) + ip


def ring(nr: int = 8) -> Any:
    return mmap.mmap(-1, SIZE * nr)


def test_slot_size_and_request_fit_the_kernel_rules() -> None:
    assert slot_size(HEADER_SNAP) == 256 and slot_size(HEADER_SNAP) % 16 == 0
    req, frame_nr, block_nr = slots_request(16 << 20, 256)
    assert (block_nr, frame_nr) == (256, 65536)
    assert REQ.unpack(req) == (SLOT_BLOCK, 256, 256, 65536)


def test_ready_slots_are_read_in_order_and_given_back() -> None:
    buf = ring()
    for i in range(3):
        put(buf, i, bytes([i]) * 60)
    r = SlotReader(buf, SIZE, 8, block_size=SIZE * 8)
    assert r.read(64) == [bytes([0]) * 60, bytes([1]) * 60, bytes([2]) * 60]
    assert [struct.unpack_from("=I", buf, i * SIZE)[0] for i in range(3)] == [TP_STATUS_KERNEL] * 3
    assert r.read(64) == [] and r.slot == 3 and r.released == 3


def test_limit_then_the_rest_and_wrap_around() -> None:
    buf = ring(4)
    r = SlotReader(buf, SIZE, 4, block_size=SIZE * 4)
    for i in range(3):
        put(buf, i, bytes([i]) * 10)
    assert len(r.read(2)) == 2 and r.slot == 2
    put(buf, 3, b"x" * 10)
    put(buf, 0, b"y" * 10)              # the kernel went round: slot 0 again
    assert r.read(64) == [bytes([2]) * 10, b"x" * 10, b"y" * 10]
    assert r.slot == 1


def test_a_cut_frame_is_returned_cut_other_interfaces_and_bad_slots_skipped() -> None:
    buf = ring()
    put(buf, 0, b"h" * 160, wire=1514)               # the filter kept the headers only
    put(buf, 1, b"o" * 60, ifindex=9)                 # another interface
    put(buf, 2, b"b" * 60, mac=SIZE - 10)             # would leave its slot
    put(buf, 3, b"k" * 60)
    r = SlotReader(buf, SIZE, 8, ifindex=7, block_size=SIZE * 8)
    assert r.read(64) == [b"h" * 160, b"k" * 60]
    assert (r.foreign, r.bad_slots, r.truncated) == (1, 1, 0)
    assert r.read(64) == [] and r.released == 4


def test_a_reader_refuses_a_buffer_too_small_or_slots_that_split_blocks() -> None:
    with pytest.raises(ValueError):
        SlotReader(ring(2), SIZE, 4, block_size=SIZE * 4)
    with pytest.raises(ValueError):
        SlotReader(ring(4), 240, 4, block_size=1000)


def test_with_snap_cuts_every_accept_and_keeps_rejects() -> None:
    prog = tcp_port_filter([80], direction="src")
    cut = with_snap(prog, HEADER_SNAP)
    assert [k for code, _t, _f, k in cut if code & 0x07 == RET] == [
        min(k, HEADER_SNAP) for code, _t, _f, k in prog if code & 0x07 == RET]
    assert any(k == ACCEPT for code, _t, _f, k in prog if code & 0x07 == RET)
    frame = eth_frame(80, 40000, payload=b"p" * 1400)
    assert run_filter(prog, frame) == ACCEPT and run_filter(cut, frame) == HEADER_SNAP
    assert run_filter(cut, eth_frame(81, 40000)) == 0
    with pytest.raises(BpfError, match="computed length"):
        with_snap([(RET | RET_A, 0, 0, 0)], 160)
    with pytest.raises(BpfError):
        with_snap(prog, 0)


def test_a_frame_cut_after_its_headers_classifies_like_the_whole_one() -> None:
    whole = eth_frame(80, 40000, payload=b"p" * 1400, flags=ACK | PSH)
    cut = whole[:HEADER_SNAP]
    assert classify_frame(cut) == classify_frame(whole)
    assert classify_frame(cut)[2] == make_record(whole, 14)
    with pytest.raises(PacketError, match="truncated"):
        fields(cut, 14)                  # a whole-packet reader still refuses it
    assert fields(cut, 14, cut=True) == fields(whole, 14)
    with pytest.raises(PacketError):
        classify_frame(whole[:14 + 30])  # the TCP header itself cut: refused
