"""Packet basics (pure): flag and protocol constants, address text, sequence arithmetic
mod 2**32, the Internet checksum, Ethernet framing (up to two VLAN tags)."""

from __future__ import annotations

import socket
import struct
from typing import Tuple

from engine.pkterror import PacketError

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
IPPROTO_TCP = 6
IP_DF, IP_MF = 0x4000, 0x2000
ETH_HLEN = 14
ETH_P_IP, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x8100, 0x88A8

_SEQ_MOD = 1 << 32
_SEQ_MASK = _SEQ_MOD - 1
_HALF = 1 << 31


# ---------------------------------------------------------------- addresses


def ip_aton(text: str) -> int:
    """Dotted quad -> int (the 4 network-order bytes read big-endian). Raises PacketError."""
    if text.count(".") == 3:
        try:
            return int.from_bytes(socket.inet_aton(text), "big")
        except OSError:
            pass
    raise PacketError("address", f"not an IPv4 address: {text!r}")


def ip_ntoa(addr: int) -> str:
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


def mac_aton(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` -> 6 bytes. Raises PacketError."""
    parts = text.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raw = b""
    if len(parts) != 6 or len(raw) != 6 or any(len(p) not in (1, 2) for p in parts):
        raise PacketError("mac", f"not a MAC address: {text!r}")
    return raw


def mac_ntoa(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# ---------------------------------------------------------------- sequence arithmetic


def seq_add(a: int, n: int) -> int:
    return (a + n) & _SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in sequence space (-2**31 .. 2**31-1)."""
    d = (a - b) & _SEQ_MASK
    return d - _SEQ_MOD if d >= _HALF else d


def seq_after(a: int, b: int) -> bool:
    """a is strictly after b (mod 2**32)."""
    return 0 < ((a - b) & _SEQ_MASK) < _HALF


def seq_before(a: int, b: int) -> bool:
    return 0 < ((b - a) & _SEQ_MASK) < _HALF


def seq_geq(a: int, b: int) -> bool:
    return ((a - b) & _SEQ_MASK) < _HALF


def seq_leq(a: int, b: int) -> bool:
    return ((b - a) & _SEQ_MASK) < _HALF


# ---------------------------------------------------------------- checksums


def checksum(data: bytes, initial: int = 0) -> int:
    """Internet checksum (RFC 1071) of ``data``; ``initial`` is a partial ones'-complement sum.

    Uses the identity 2**16 == 1 (mod 0xFFFF): the big-endian integer value of the buffer taken
    mod 0xFFFF is its ones'-complement word sum (0 standing for 0xFFFF unless all bytes are 0).
    """
    if len(data) & 1:
        data = data + b"\x00"
    s = (int.from_bytes(data, "big") + initial) % 0xFFFF
    if s == 0 and (initial or any(data)):
        s = 0xFFFF
    return ~s & 0xFFFF


def tcp_checksum(src: int, dst: int, segment: bytes) -> int:
    """TCP checksum of ``segment`` (header with checksum field zeroed + payload)."""
    pseudo = ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
              + IPPROTO_TCP + len(segment))
    return checksum(segment, pseudo % 0xFFFF)


# ---------------------------------------------------------------- Ethernet

_ETH = struct.Struct("!6s6sH")


def strip_ethernet(frame: bytes) -> Tuple[int, int]:
    """(ethertype, offset of the L3 header). Up to two VLAN tags (802.1Q/802.1ad) are skipped.
    Raises PacketError if the frame is too short."""
    if len(frame) < ETH_HLEN:
        raise PacketError("truncated", f"Ethernet frame of {len(frame)} bytes")
    etype = (frame[12] << 8) | frame[13]
    off = ETH_HLEN
    for _ in range(2):
        if etype not in (ETH_P_8021Q, ETH_P_8021AD):
            break
        if len(frame) < off + 4:
            raise PacketError("truncated", "VLAN tag cut short")
        etype = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    return etype, off


def build_ethernet(dst: bytes, src: bytes, ethertype: int = ETH_P_IP) -> bytes:
    if len(dst) != 6 or len(src) != 6:
        raise PacketError("mac", "MAC addresses must be 6 bytes")
    return _ETH.pack(dst, src, ethertype)
