"""Hot-path packet building and field extraction for the session emulator (pure).

The full typed headers live in ``engine.packets``; this module only holds what the emulator
needs per packet, kept allocation-light: one ``struct`` pack per header, the TCP checksum from
a precomputed payload partial sum (``payload_sum``) so retransmissions and ``-n`` replicas do not
re-sum the payload, and the IP checksum filled explicitly (needed for ``-o`` data-link sending;
harmless with IP_HDRINCL).
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from engine.packets import ACK, RST, parse_tcp_options

IP_HDR = struct.Struct("!BBHHHBBHII")
TCP_HDR = struct.Struct("!HHIIBBHHH")
IP_FIELDS = struct.Struct("!BxHHHBBxxII")   # vihl, tot, id, frag, ttl, proto, src, dst
TCP_FIELDS = struct.Struct("!HHIIBBH")      # sport, dport, seq, ack, doff, flags, window
TS_OPT = struct.Struct("!BBBBII")
RECORD_SIZE = 64

_TS_HEAD = (1, 1, 8, 10)
_LINUX_SYN = struct.Struct("!2xH4xII3xB")     # MSS 4, SACK-OK 2, TS 10, NOP, WS 3


def payload_sum(payload: bytes) -> int:
    """Partial ones'-complement sum of a payload that starts at an even offset."""
    if not payload:
        return 0
    if len(payload) & 1:
        return (int.from_bytes(payload, "big") << 8) % 0xFFFF
    return int.from_bytes(payload, "big") % 0xFFFF


def ts_option(tsval: int, tsecr: int) -> bytes:
    return TS_OPT.pack(1, 1, 8, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)


def build_packet(src: int, dst: int, ident: int, sport: int, dport: int, seq: int, ack: int,
                 flags: int, window: int, options: bytes, payload: bytes, psum: int) -> bytes:
    """IPv4+TCP bytes with both checksums computed (DF set, TTL 64)."""
    thl = 20 + len(options)
    tcp_len = thl + len(payload)
    doff = (thl >> 2) << 4
    head = TCP_HDR.pack(sport, dport, seq, ack, doff, flags, window, 0, 0) + options
    s = ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + tcp_len
         + int.from_bytes(head, "big") + psum) % 0xFFFF
    csum = (~s & 0xFFFF) if s else 0
    head = TCP_HDR.pack(sport, dport, seq, ack, doff, flags, window, csum, 0) + options
    total = 20 + tcp_len
    ident &= 0xFFFF
    s = ((0x4500 + total + ident + 0x4000 + 0x4006 + (src >> 16) + (src & 0xFFFF)
          + (dst >> 16) + (dst & 0xFFFF)) % 0xFFFF)
    ipsum = (~s & 0xFFFF) if s else 0
    return IP_HDR.pack(0x45, 0, total, ident, 0x4000, 64, 6, ipsum, src, dst) + head + payload


def find_ts(options: bytes) -> Optional[Tuple[int, int]]:
    """(tsval, tsecr) if the options hold a timestamp; fast path for the usual NOP NOP TS."""
    if len(options) >= 12 and options[2] == 8 and options[0] == 1 and options[1] == 1:
        _a, _b, _c, _d, tsval, tsecr = TS_OPT.unpack_from(options, 0)
        return tsval, tsecr
    if not options:
        return None
    try:
        return parse_tcp_options(options).timestamps
    except ValueError:
        return None


def syn_options(options: bytes) -> Tuple[Optional[int], Optional[int], Optional[Tuple[int, int]]]:
    """(mss, wscale, timestamps) of SYN/SYN-ACK options; malformed options read as absent."""
    if (len(options) == 20 and options[:2] == b"\x02\x04"
            and options[4:8] == b"\x04\x02\x08\x0a" and options[16:19] == b"\x01\x03\x03"):
        # Linux's usual layout: MSS, SACK-OK, TS, NOP, WS (no generic parse per connection)
        mss, tsval, tsecr, wscale = _LINUX_SYN.unpack(options)
        return mss, wscale, (tsval, tsecr)
    try:
        opts = parse_tcp_options(options)
    except ValueError:
        return None, None, None
    return opts.mss, opts.wscale, opts.timestamps


def rst_packet(src: int, dst: int, ident: int, sport: int, dport: int, seq: int,
               ack: int) -> bytes:
    return build_packet(src, dst, ident, sport, dport, seq, ack, RST | ACK, 0, b"", b"", 0)
