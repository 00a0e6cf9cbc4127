"""Raw TCP options: iterate, parse the ones tcpcopy uses, rebuild, and rewrite timestamps.

Options stay raw bytes on a ``TCPHeader``; these pure helpers read and rebuild them.
``engine.packets`` re-exports every name here.
"""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Tuple

from engine.pkterror import PacketError

_SEQ_MASK = (1 << 32) - 1

TCPOPT_EOL, TCPOPT_NOP, TCPOPT_MSS, TCPOPT_WSCALE, TCPOPT_SACK_OK, TCPOPT_TS = 0, 1, 2, 3, 4, 8


class TcpOptions(NamedTuple):
    mss: Optional[int] = None
    wscale: Optional[int] = None
    sack_ok: bool = False
    timestamps: Optional[Tuple[int, int]] = None  # (tsval, tsecr)


def iter_tcp_options(raw: bytes) -> List[Tuple[int, bytes]]:
    """[(kind, data)] of raw TCP options (NOP omitted, stops at EOL). Raises PacketError."""
    out: List[Tuple[int, bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n or raw[i + 1] < 2 or i + raw[i + 1] > n:
            raise PacketError("tcp_option", f"bad length for option kind {kind} at offset {i}")
        out.append((kind, bytes(raw[i + 2:i + raw[i + 1]])))
        i += raw[i + 1]
    return out


def parse_tcp_options(raw: bytes) -> TcpOptions:
    mss = wscale = None
    sack_ok = False
    ts: Optional[Tuple[int, int]] = None
    for kind, data in iter_tcp_options(raw):
        if kind == TCPOPT_MSS and len(data) == 2:
            mss = int.from_bytes(data, "big")
        elif kind == TCPOPT_WSCALE and len(data) == 1:
            wscale = data[0]
        elif kind == TCPOPT_SACK_OK:
            sack_ok = True
        elif kind == TCPOPT_TS and len(data) == 8:
            ts = (int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
    return TcpOptions(mss, wscale, sack_ok, ts)


def build_tcp_options(mss: Optional[int] = None, wscale: Optional[int] = None,
                      sack_ok: bool = False,
                      timestamps: Optional[Tuple[int, int]] = None) -> bytes:
    """Options in Linux's order (MSS, SACK-OK+TS, NOP+WS), NOP-padded to a multiple of 4."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", TCPOPT_MSS, 4, mss)
    if sack_ok and timestamps is not None:
        out += struct.pack("!BBBBII", TCPOPT_SACK_OK, 2, TCPOPT_TS, 10, *timestamps)
    elif timestamps is not None:
        out += struct.pack("!BBBBII", TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TS, 10, *timestamps)
    elif sack_ok:
        out += struct.pack("!BBBB", TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_OK, 2)
    if wscale is not None:
        out += struct.pack("!BBBB", TCPOPT_NOP, TCPOPT_WSCALE, 3, wscale)
    return out + b"\x01" * (-len(out) % 4)


def _ts_offset(raw: bytes) -> int:
    """Offset of the 8 timestamp data bytes inside ``raw``, or -1."""
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == TCPOPT_EOL:
            return -1
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n or raw[i + 1] < 2:
            return -1
        if kind == TCPOPT_TS and raw[i + 1] == 10 and i + 10 <= n:
            return i + 2
        i += raw[i + 1]
    return -1


def get_timestamps(raw: bytes) -> Optional[Tuple[int, int]]:
    """(tsval, tsecr) from raw options, or None. Never raises."""
    off = _ts_offset(raw)
    if off < 0:
        return None
    tsval, tsecr = struct.unpack_from("!II", raw, off)
    return tsval, tsecr


def set_timestamps(raw: bytes, tsval: int, tsecr: int) -> bytes:
    """Raw options with the timestamp values replaced in place (unchanged if there is none)."""
    off = _ts_offset(raw)
    if off < 0:
        return raw
    return raw[:off] + struct.pack("!II", tsval & _SEQ_MASK, tsecr & _SEQ_MASK) + raw[off + 8:]
