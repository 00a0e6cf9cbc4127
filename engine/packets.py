"""IPv4 / TCP / Ethernet headers as small typed values (pure, stdlib only).

Shape:
- ``IPv4Header`` and ``TCPHeader``: mutable values with ``__slots__`` and one precompiled
  ``struct.Struct`` each; ``unpack(buf, offset=0)`` raises ``PacketError`` on any bad
  length / version / IHL / DOFF; ``pack()`` emits exactly the stored fields (no fix-ups).
  Addresses are ints (the network-order 4 bytes read big-endian); see ``ip_aton``/``ip_ntoa``.
- ``Packet`` (ip, tcp, payload; ``packet.options`` is ``tcp.options``, raw bytes).
  ``parse_ipv4_tcp`` is ``engine.header.view`` (the one set of validation rules, shared with
  the capture path, the router and the channel decoder) plus ``from_view`` constructors.
  ``to_bytes()`` never touches checksums or lengths; ``fill_checksums(packet)`` (in place) and
  ``packet.with_checksums()`` (copy) recompute total_length, IHL/DOFF and both checksums.
- TCP options stay raw; ``parse_tcp_options`` / ``build_tcp_options`` / ``get_timestamps`` /
  ``set_timestamps`` (in ``engine.tcpopts``, re-exported here) read and rebuild them.
- Ethernet: ``strip_ethernet(frame) -> (ethertype, l3_offset)`` tolerates 802.1Q / 802.1ad
  tags; ``build_ethernet(dst, src, ethertype)``.
- Sequence arithmetic mod 2**32: ``seq_after``, ``seq_before``, ``seq_geq``, ``seq_leq``,
  ``seq_add``, ``seq_diff``.
"""

from __future__ import annotations

import socket
import struct
from typing import Tuple

from engine.header import HeaderView, view
from engine.pkterror import PacketError
from engine.tcpopts import (
    TcpOptions,
    build_tcp_options,
    get_timestamps,
    iter_tcp_options,
    parse_tcp_options,
    set_timestamps,
)

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "ETH_HLEN",
    "ETH_P_8021AD",
    "ETH_P_8021Q",
    "ETH_P_IP",
    "FIN",
    "IPPROTO_TCP",
    "IP_DF",
    "IP_MF",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "IPv4Header",
    "Packet",
    "PacketError",
    "TCPHeader",
    "TcpOptions",
    "build_ethernet",
    "build_tcp_options",
    "checksum",
    "fill_checksums",
    "get_timestamps",
    "ip_aton",
    "ip_ntoa",
    "iter_tcp_options",
    "mac_aton",
    "mac_ntoa",
    "parse_ipv4_tcp",
    "parse_tcp_options",
    "seq_add",
    "seq_after",
    "seq_before",
    "seq_diff",
    "seq_geq",
    "seq_leq",
    "set_timestamps",
    "strip_ethernet",
    "tcp_checksum",
]

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


# ---------------------------------------------------------------- IPv4


class IPv4Header:
    """IPv4 header. ``flags_frag`` holds the 3 flag bits and the 13-bit fragment offset."""

    __slots__ = ("checksum", "dst", "flags_frag", "ident", "ihl", "options", "protocol",
                 "src", "tos", "total_length", "ttl", "version")
    STRUCT = struct.Struct("!BBHHHBBHII")

    def __init__(self, src: int = 0, dst: int = 0, *, version: int = 4, ihl: int = 5,
                 tos: int = 0, total_length: int = 20, ident: int = 0, flags_frag: int = IP_DF,
                 ttl: int = 64, protocol: int = IPPROTO_TCP, checksum: int = 0,
                 options: bytes = b"") -> None:
        self.version, self.ihl, self.tos, self.total_length = version, ihl, tos, total_length
        self.ident, self.flags_frag, self.ttl, self.protocol = ident, flags_frag, ttl, protocol
        self.checksum, self.src, self.dst, self.options = checksum, src, dst, options

    @classmethod
    def unpack(cls, buf: bytes, offset: int = 0) -> IPv4Header:
        if len(buf) - offset < 20:
            raise PacketError("truncated", f"IPv4 header needs 20 bytes, have {len(buf) - offset}")
        vi, tos, tl, ident, ff, ttl, proto, csum, src, dst = cls.STRUCT.unpack_from(buf, offset)
        version, ihl = vi >> 4, vi & 0xF
        if version != 4:
            raise PacketError("version", f"IP version {version}")
        if ihl < 5:
            raise PacketError("ihl", f"IHL {ihl} < 5")
        hlen = ihl * 4
        if len(buf) - offset < hlen:
            raise PacketError("truncated", f"IHL {ihl} needs {hlen} bytes")
        h = cls.__new__(cls)  # bypasses keyword __init__: ~2x faster on the capture path
        h.version, h.ihl, h.tos, h.total_length, h.ident = version, ihl, tos, tl, ident
        h.flags_frag, h.ttl, h.protocol, h.checksum, h.src, h.dst = ff, ttl, proto, csum, src, dst
        h.options = bytes(buf[offset + 20:offset + hlen]) if ihl > 5 else b""
        return h

    @classmethod
    def from_view(cls, hv: HeaderView, options: bytes = b"") -> IPv4Header:
        """From a header view (and the IP option bytes, if the caller has them)."""
        h = cls.__new__(cls)
        (vihl, h.tos, h.total_length, h.ident, h.flags_frag, h.ttl, h.protocol, h.checksum,
         h.src, h.dst) = hv[:10]
        h.version, h.ihl, h.options = vihl >> 4, vihl & 15, options
        return h

    def pack(self) -> bytes:
        head = self.STRUCT.pack((self.version << 4) | self.ihl, self.tos, self.total_length,
                                self.ident, self.flags_frag, self.ttl, self.protocol,
                                self.checksum, self.src, self.dst)
        return head + self.options if self.options else head

    @property
    def header_length(self) -> int:
        return self.ihl * 4

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_frag & 0x3FFF)

    def copy(self) -> IPv4Header:
        new = IPv4Header.__new__(IPv4Header)
        for name in IPv4Header.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPv4Header) and all(
            getattr(self, n) == getattr(other, n) for n in IPv4Header.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"IPv4Header({ip_ntoa(self.src)} > {ip_ntoa(self.dst)}, len={self.total_length}, "
                f"id={self.ident}, ttl={self.ttl}, proto={self.protocol})")


# ---------------------------------------------------------------- TCP


class TCPHeader:
    """TCP header. ``flags`` is the 8 flag bits; ``reserved`` keeps the 4 bits next to DOFF."""

    __slots__ = ("ack", "checksum", "doff", "dport", "flags", "options", "reserved", "seq",
                 "sport", "urgent", "window")
    STRUCT = struct.Struct("!HHIIBBHHH")

    def __init__(self, sport: int = 0, dport: int = 0, seq: int = 0, ack: int = 0, *,
                 flags: int = 0, window: int = 65535, doff: int = 5, reserved: int = 0,
                 checksum: int = 0, urgent: int = 0, options: bytes = b"") -> None:
        self.sport, self.dport, self.seq, self.ack = sport, dport, seq, ack
        self.flags, self.window, self.doff, self.reserved = flags, window, doff, reserved
        self.checksum, self.urgent, self.options = checksum, urgent, options

    @classmethod
    def unpack(cls, buf: bytes, offset: int = 0) -> TCPHeader:
        if len(buf) - offset < 20:
            raise PacketError("truncated", f"TCP header needs 20 bytes, have {len(buf) - offset}")
        sport, dport, seq, ack, dr, flags, win, csum, urg = cls.STRUCT.unpack_from(buf, offset)
        doff = dr >> 4
        if doff < 5:
            raise PacketError("doff", f"DOFF {doff} < 5")
        hlen = doff * 4
        if len(buf) - offset < hlen:
            raise PacketError("truncated", f"DOFF {doff} needs {hlen} bytes")
        h = cls.__new__(cls)
        h.sport, h.dport, h.seq, h.ack, h.flags, h.window = sport, dport, seq, ack, flags, win
        h.doff, h.reserved, h.checksum, h.urgent = doff, dr & 0xF, csum, urg
        h.options = bytes(buf[offset + 20:offset + hlen]) if doff > 5 else b""
        return h

    @classmethod
    def from_view(cls, hv: HeaderView, buf: bytes = b"", tcp_offset: int = 0) -> TCPHeader:
        """From a header view of ``buf`` whose TCP header starts at ``tcp_offset``; options
        past the end of ``buf`` (a record cuts the header at 44 bytes) read as zero bytes, so
        DOFF and the option length agree."""
        h = cls.__new__(cls)
        (h.sport, h.dport, h.seq, h.ack, doff_res, h.flags, h.window, h.checksum,
         h.urgent) = hv[10:]
        h.doff, h.reserved = doff_res >> 4, doff_res & 15
        doff = h.doff * 4
        if doff > 20:
            opts = bytes(buf[tcp_offset + 20:tcp_offset + doff])
            h.options = opts + bytes(doff - 20 - len(opts))
        else:
            h.options = b""
        return h

    def pack(self) -> bytes:
        head = self.STRUCT.pack(self.sport, self.dport, self.seq, self.ack,
                                (self.doff << 4) | self.reserved, self.flags, self.window,
                                self.checksum, self.urgent)
        return head + self.options if self.options else head

    @property
    def header_length(self) -> int:
        return self.doff * 4

    def copy(self) -> TCPHeader:
        new = TCPHeader.__new__(TCPHeader)
        for name in TCPHeader.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TCPHeader) and all(
            getattr(self, n) == getattr(other, n) for n in TCPHeader.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"TCPHeader({self.sport} > {self.dport}, flags={flags_str(self.flags)}, "
                f"seq={self.seq}, ack={self.ack}, win={self.window}, doff={self.doff})")


def flags_str(flags: int) -> str:
    """tcpdump-style flag letters, e.g. ``S.`` for SYN-ACK."""
    out = "".join(c for bit, c in ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (URG, "U"))
                  if flags & bit)
    return out + ("." if flags & ACK else "")


# ---------------------------------------------------------------- Packet


class Packet:
    """An IPv4/TCP packet: headers plus payload. Mutable; ``copy()`` before sharing."""

    __slots__ = ("ip", "payload", "tcp")

    def __init__(self, ip: IPv4Header, tcp: TCPHeader, payload: bytes = b"") -> None:
        self.ip, self.tcp, self.payload = ip, tcp, payload

    @property
    def options(self) -> bytes:
        return self.tcp.options

    def to_bytes(self) -> bytes:
        """Exactly the stored fields; checksums/lengths are NOT recomputed (see fill_checksums)."""
        return self.ip.pack() + self.tcp.pack() + self.payload

    def copy(self) -> Packet:
        return Packet(self.ip.copy(), self.tcp.copy(), self.payload)

    def with_checksums(self) -> Packet:
        new = self.copy()
        fill_checksums(new)
        return new

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Packet) and self.ip == other.ip and self.tcp == other.tcp
                and self.payload == other.payload)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Packet({self.ip!r}, {self.tcp!r}, payload={len(self.payload)}B)"


def fill_checksums(packet: Packet) -> None:
    """In place: set IHL/DOFF from the option lengths, total_length, TCP and IP checksums."""
    ip, tcp = packet.ip, packet.tcp
    ip.ihl = 5 + len(ip.options) // 4
    tcp.doff = 5 + len(tcp.options) // 4
    tcp.checksum = 0
    segment = tcp.pack() + packet.payload
    ip.total_length = ip.ihl * 4 + len(segment)
    tcp.checksum = tcp_checksum(ip.src, ip.dst, segment)
    ip.checksum = 0
    ip.checksum = checksum(ip.pack())


def parse_ipv4_tcp(buf: bytes, offset: int = 0) -> Packet:
    """Parse an IPv4+TCP packet starting at ``offset``: ``engine.header.view`` (its rules and
    ``PacketError`` reasons) plus the options and payload. Bytes beyond total_length (Ethernet
    padding) are ignored."""
    hv = view(buf, offset)
    toff = offset + hv.ihl
    return Packet(IPv4Header.from_view(hv, bytes(buf[offset + 20:toff])),
                  TCPHeader.from_view(hv, buf, toff),
                  bytes(buf[toff + hv.doff:offset + hv.total_length]))


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
