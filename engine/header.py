"""The one fast IPv4+TCP header view and its one set of validation rules (pure, stdlib only).

``view(buf, offset=0) -> HeaderView`` reads a whole packet (capture path, router);
``record_view(rec) -> HeaderView`` reads a 64-byte channel record (IP header without options,
TCP header cut at 44 bytes, no payload). Both raise ``PacketError`` whose ``reason`` says what
is wrong; the rules, in the order they are checked:

======== =====================================================================================
reason   rule
======== =====================================================================================
truncated fewer than 20 bytes of IP header; IHL or the TCP header (20 bytes, DOFF) past the
         buffer; a packet's total_length past the buffer (a record, and a capture cut after
         the headers, ``fields(cut=True)``: not checked)
version  IP version is not 4
ihl      IHL < 5
protocol IP protocol is not TCP
fragment a non-first fragment (offset != 0: it has no TCP header)
doff     TCP DOFF < 5
length   total_length shorter than the IP + TCP headers
======== =====================================================================================

A first fragment (MF set, offset 0) is a valid view: whether to use it is the caller's policy
(tcpcopy counts it as ``frag`` and drops it). Bytes past ``total_length`` (Ethernet padding)
are ignored. ``HeaderView`` is a named tuple of the wire fields, made from one struct unpack
(no per-field attribute writes). The per-packet paths (tcpcopy's capture and response
records, intercept's ``classify_frame``) call ``fields``/``record_fields``: the same rules,
the same fields as a plain tuple, unpacked into locals. The typed values of ``engine.packets``
(``IPv4Header``, ``TCPHeader``, ``Packet``) and ``protocol.decode_record`` are built on
``view``/``record_view``.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, Tuple, Union

from engine.pkterror import PacketError

Buffer = Union[bytes, bytearray, memoryview]
Fields = Tuple[int, ...]        # the 19 HeaderView fields, as a plain tuple

IP_FIELDS = struct.Struct("!BBHHHBBHII")   # vihl, tos, tot, id, frag, ttl, proto, csum, src, dst
TCP_FIELDS = struct.Struct("!HHIIBBHHH")   # sport, dport, seq, ack, doff, flags, win, csum, urg
BOTH_FIELDS = struct.Struct("!BBHHHBBHIIHHIIBBHHH")   # both, when there are no IP options
RECORD_SIZE = 64
RECORD_TCP = 20                             # a record's TCP header starts here (no IP options)
RECORD_TCP_MAX = 44                         # and is cut at this many bytes


class HeaderView(NamedTuple):
    """The IPv4 and TCP header fields of one packet or record, in wire order (one struct
    unpack fills them; no option bytes). ``vihl`` and ``doff_res`` are the raw bytes
    (version/IHL, DOFF/reserved bits); ``ihl`` and ``doff`` give the lengths in BYTES. Where
    the TCP header starts is the caller's: ``offset + ihl`` in a packet, 20 in a record."""

    vihl: int
    tos: int
    total_length: int
    ident: int
    flags_frag: int
    ttl: int
    protocol: int
    ip_checksum: int
    src: int
    dst: int
    sport: int
    dport: int
    seq: int
    ack: int
    doff_res: int
    flags: int
    window: int
    tcp_checksum: int
    urgent: int

    @property
    def ihl(self) -> int:
        return (self.vihl & 15) << 2

    @property
    def doff(self) -> int:
        return (self.doff_res >> 4) << 2

    @property
    def payload_length(self) -> int:
        return self.total_length - self.ihl - self.doff

    @property
    def is_fragment(self) -> bool:
        """Part of a fragmented datagram (MF set, or a fragment offset)."""
        return bool(self.flags_frag & 0x3FFF)


_new = tuple.__new__
_both = BOTH_FIELDS.unpack_from


def view(buf: Buffer, offset: int = 0) -> HeaderView:
    """The headers of the IPv4+TCP packet at ``offset``. Raises ``PacketError``."""
    return _new(HeaderView, fields(buf, offset))


def record_view(rec: Buffer) -> HeaderView:
    """The headers of a 64-byte channel record. Raises ``PacketError``."""
    return _new(HeaderView, record_fields(rec))


def fields(buf: Buffer, offset: int = 0, cut: bool = False) -> Fields:
    """``view`` as a plain tuple in ``HeaderView`` order (the per-packet paths unpack it into
    locals: no named-tuple copy). Same rules, same errors. ``cut``: the capture kept only the
    first bytes of the frame (intercept's header-only capture), so a total_length past the
    buffer is not an error; the headers themselves must still be whole."""
    n = len(buf) - offset
    if n >= 40:
        # the usual packet (no IP options) in one unpack; anything odd takes the full path,
        # which applies the same rules and names the one broken
        f = _both(buf, offset)
        doff = (f[14] >> 4) << 2
        if (f[0] == 0x45 and f[6] == 6 and not f[4] & 0x1FFF and 20 <= doff <= n - 20
                and 20 + doff <= f[2] and (cut or f[2] <= n)):
            return f
    return _fields(buf, offset, False, cut)


def record_fields(rec: Buffer) -> Fields:
    """``record_view`` as a plain tuple (see ``fields``)."""
    if len(rec) != RECORD_SIZE:
        raise PacketError("truncated", f"a record is {RECORD_SIZE} bytes, not {len(rec)}")
    f = _both(rec, 0)
    doff = (f[14] >> 4) << 2
    if f[0] == 0x45 and f[6] == 6 and not f[4] & 0x1FFF and doff >= 20 and f[2] >= 20 + doff:
        return f
    return _fields(rec, 0, True)


def _fields(buf: Buffer, off: int, record: bool, cut: bool = False) -> Fields:
    n = len(buf) - off
    if n < 20:
        raise PacketError("truncated", f"IPv4 header needs 20 bytes, have {n}")
    ip = IP_FIELDS.unpack_from(buf, off)
    vihl, proto, tot = ip[0], ip[6], ip[2]
    if vihl >> 4 != 4:
        raise PacketError("version", f"IP version {vihl >> 4}")
    ihl = (vihl & 15) << 2
    if ihl < 20:
        raise PacketError("ihl", f"IHL {ihl >> 2} < 5")
    if proto != 6:
        raise PacketError("protocol", f"IP protocol {proto} is not TCP")
    if ip[4] & 0x1FFF:
        raise PacketError("fragment", "non-first IP fragment")
    toff = off + RECORD_TCP if record else off + ihl
    if len(buf) - toff < 20:
        raise PacketError("truncated", f"IHL {ihl >> 2} leaves no room for the TCP header")
    tcp = TCP_FIELDS.unpack_from(buf, toff)
    doff = (tcp[4] >> 4) << 2
    if doff < 20:
        raise PacketError("doff", f"DOFF {doff >> 2} < 5")
    if not record:
        if toff + doff > len(buf):
            raise PacketError("truncated", f"DOFF {doff >> 2} needs {doff} bytes")
        if tot > n and not cut:
            raise PacketError("truncated", f"total_length {tot} > {n}")
    if tot < ihl + doff:
        raise PacketError("length", f"total_length {tot} < IP+TCP header length")
    return ip + tcp


def record_options(rec: Buffer, hv: HeaderView) -> bytes:
    """The TCP options a record carries (cut at 44 bytes of TCP header)."""
    if hv.doff <= 20:
        return b""
    return bytes(rec[RECORD_TCP + 20:RECORD_TCP + min(hv.doff, RECORD_TCP_MAX)])


__all__ = ["RECORD_SIZE", "RECORD_TCP", "Fields", "HeaderView", "PacketError", "fields",
           "record_fields", "record_options", "record_view", "view"]
