"""Offline replay (tcpcopy --pcap): pacing by the file's clock, acceleration, idle skipping,
repeats, link types, truncated and foreign records, and the option rules."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from engine.offline import OfflineError, OfflineSource, ip_payload
from engine.options import OptionsError, parse_tcpcopy_args
from engine.pcapfile import write_pcap

ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"


def ip(n: int) -> bytes:
    return bytes([0x45, 0]) + struct.pack("!H", 40) + bytes(8) + bytes([10, 0, 0, n]) + bytes(
        4) + bytes(20)


def pcap(tmp: Path, times: list[float], linktype: int = 1, name: str = "f.pcap") -> str:
    path = str(tmp / name)
    frames = [(t, (ETH if linktype == 1 else b"") + ip(i)) for i, t in enumerate(times)]
    write_pcap(path, frames, linktype=linktype)
    return path


def ids(pkts: list[bytes]) -> list[int]:
    return [p[15] for p in pkts]


def test_paced_by_the_file_clock(tmp_path: Path) -> None:
    src = OfflineSource(pcap(tmp_path, [100.0, 100.5, 101.0, 103.0]))
    assert ids(src.due(0.0)) == [0]
    assert ids(src.due(0.4)) == []
    assert src.seconds_until_next(0.4) == pytest.approx(0.1)
    assert ids(src.due(1.0)) == [1, 2]
    assert ids(src.due(2.99)) == [] and not src.at_eof
    assert ids(src.due(3.0)) == [3]
    assert src.due(3.0) == [] and src.at_eof and src.seconds_until_next(3.0) is None
    assert src.records == 4
    assert not src.next_round(3.0) and src.done


def test_acceleration_and_idle_skip(tmp_path: Path) -> None:
    fast = OfflineSource(pcap(tmp_path, [0.0, 1.0, 2.0]), accelerate=4)
    assert ids(fast.due(0.25)) == [0, 1] and ids(fast.due(0.5)) == [2]
    # a 60 s idle gap shrinks to 0.5 s with -I 500
    skip = OfflineSource(pcap(tmp_path, [0.0, 0.2, 60.2, 60.3], name="g.pcap"), idle_skip=0.5)
    assert ids(skip.due(0.2)) == [0, 1]
    assert ids(skip.due(0.69)) == []
    assert ids(skip.due(0.7)) == [2]
    assert ids(skip.due(0.8)) == [3] and skip.at_eof


def test_repeat_replays_the_file_again(tmp_path: Path) -> None:
    src = OfflineSource(pcap(tmp_path, [5.0, 6.0]), repeat=3)
    got, rounds_started = [], []
    for step in range(0, 80):
        got += ids(src.due(step * 0.1))
        if src.at_eof and not src.done and src.next_round(step * 0.1):
            rounds_started.append(step)
    # each round starts when the previous one ended and keeps the file's pacing
    assert got == [0, 1, 0, 1, 0, 1] and src.done and src.round == 3
    assert rounds_started == [10, 20]


def test_batch_limit(tmp_path: Path) -> None:
    src = OfflineSource(pcap(tmp_path, [0.0] * 10))
    assert len(src.due(0.0, limit=4)) == 4 and len(src.due(0.0, limit=100)) == 6


@pytest.mark.parametrize("linktype, frame, want", [
    (1, ETH + ip(7), 7),
    (1, b"\x02" * 12 + b"\x81\x00\x00\x05\x08\x00" + ip(7), 7),       # VLAN tag
    (113, bytes(14) + b"\x08\x00" + ip(7), 7),                          # Linux cooked
    (276, b"\x08\x00" + bytes(18) + ip(7), 7),                          # Linux cooked v2
    (101, ip(7), 7),                                                    # raw IP
    (1, b"\x02" * 12 + b"\x86\xdd" + bytes(40), None),                  # IPv6
    (113, bytes(14) + b"\x08\x06" + bytes(28), None),                   # ARP
])
def test_link_types(linktype: int, frame: bytes, want: int | None) -> None:
    got = ip_payload(linktype, frame)
    assert (got[15] if got is not None else None) == want


def test_truncated_and_foreign_records_are_counted(tmp_path: Path) -> None:
    path = str(tmp_path / "t.pcap")
    write_pcap(path, [(0.0, ETH + ip(1)), (0.1, b"\x02" * 12 + b"\x86\xdd" + bytes(40))])
    raw = bytearray(Path(path).read_bytes())
    # claim the first record was 1,000 bytes on the wire (snap length cut it)
    struct.pack_into("<I", raw, 24 + 12, 1000)
    Path(path).write_bytes(bytes(raw) + b"\x01\x02")          # and a cut-off record header
    src = OfflineSource(path)
    assert src.due(1.0) == [] and src.at_eof
    assert (src.records, src.truncated, src.not_ip) == (2, 2, 1)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(OfflineError, match=r"missing\.pcap"):
        OfflineSource(str(tmp_path / "missing.pcap"))
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello, this is not a pcap file at all")
    with pytest.raises(OfflineError, match="not a pcap file"):
        OfflineSource(str(junk))
    with pytest.raises(OfflineError, match="link type 105 is not supported"):
        OfflineSource(pcap(tmp_path, [0.0], linktype=105, name="wifi.pcap"))


BASE = ["-x", "80-10.0.0.2:80", "-s", "10.0.0.3"]


def test_options() -> None:
    o = parse_tcpcopy_args([*BASE, "--pcap", "a.pcap", "-a", "2", "-I", "500", "-T", "3",
                            "--drain-timeout", "5"])
    assert (o.pcap, o.accelerate, o.idle_skip_ms, o.repeat, o.drain_timeout) == (
        "a.pcap", 2.0, 500, 3, 5.0)
    with pytest.raises(OptionsError, match="add --pcap"):
        parse_tcpcopy_args([*BASE, "-a", "2"])
    with pytest.raises(OptionsError, match="-i and -F are for live capture"):
        parse_tcpcopy_args([*BASE, "--pcap", "a.pcap", "-i", "eth0"])
    with pytest.raises(OptionsError, match="-T"):
        parse_tcpcopy_args([*BASE, "--pcap", "a.pcap", "-T", "0"])
