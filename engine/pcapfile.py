"""Classic pcap files (libpcap 2.4): a tiny stdlib reader and writer.

``read_pcap(path) -> PcapFile`` (linktype + list of ``PcapRecord(ts, data, orig_len)``);
``iter_pcap(stream)`` yields records lazily (for the offline replay mode);
``write_pcap(path, records, linktype=LINKTYPE_ETHERNET)``.
Both byte orders and micro/nanosecond timestamps are read. pcapng is refused with
``PcapError`` naming the file. Truncated last records are an error too (never silently cut).
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterable, Iterator, List, NamedTuple, Tuple

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101          # raw IPv4/IPv6
LINKTYPE_LINUX_SLL = 113    # "any" device cooked capture

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


class PcapError(ValueError):
    """The file is not a readable classic pcap file."""


class PcapRecord(NamedTuple):
    ts: float
    data: bytes
    orig_len: int


class PcapFile(NamedTuple):
    linktype: int
    snaplen: int
    records: List[PcapRecord]


def _header(stream: BinaryIO, name: str) -> Tuple[str, float, int, int]:
    head = stream.read(24)
    if len(head) < 24:
        raise PcapError(f"{name}: too short for a pcap header")
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        raise PcapError(f"{name}: pcapng is not supported; convert with `tcpdump -r IN -w OUT`")
    if head[:4] not in _MAGICS:
        raise PcapError(f"{name}: not a pcap file (magic {head[:4].hex()})")
    endian, unit = _MAGICS[head[:4]]
    _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", head[4:])
    return endian, unit, snaplen, linktype & 0xFFFF


def iter_pcap(stream: BinaryIO, name: str = "<stream>") -> Iterator[Tuple[int, PcapRecord]]:
    """Yield (linktype, record) for each packet of an open binary stream."""
    endian, unit, _snaplen, linktype = _header(stream, name)
    rec = struct.Struct(endian + "IIII")
    index = 0
    while True:
        head = stream.read(16)
        if not head:
            return
        if len(head) < 16:
            raise PcapError(f"{name}: record {index} header truncated")
        sec, frac, incl, orig = rec.unpack(head)
        data = stream.read(incl)
        if len(data) < incl:
            raise PcapError(f"{name}: record {index} truncated ({len(data)} of {incl} bytes)")
        yield linktype, PcapRecord(sec + frac * unit, data, orig)
        index += 1


def read_pcap(path: str) -> PcapFile:
    with open(path, "rb") as stream:
        _endian, _unit, snaplen, linktype = _header(stream, path)
        stream.seek(0)
        records = [r for _lt, r in iter_pcap(stream, path)]
    return PcapFile(linktype, snaplen, records)


def write_pcap(path: str, records: Iterable[Tuple[float, bytes]],
               linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> int:
    """Write (ts, frame) pairs as a little-endian microsecond pcap; returns the record count."""
    count = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for ts, data in records:
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            out.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
            out.write(data)
            count += 1
    return count
