"""engine.packets: golden bytes from the C tools' captures, round-trips, fuzz."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import packets as P
from engine.pcapfile import PcapError, read_pcap, write_pcap
from tests.unit.vectors import NAMES
from tests.unit.vectors import vector_frames as frames


@pytest.mark.parametrize("name", NAMES)
def test_every_vector_frame_round_trips_and_checksums_match(name: str) -> None:
    for frame in frames(name):
        etype, off = P.strip_ethernet(frame)
        assert etype == P.ETH_P_IP and off == 14
        pkt = P.parse_ipv4_tcp(frame, off)
        raw = frame[off:off + pkt.ip.total_length]
        assert pkt.to_bytes() == raw
        # the captures were taken with offloads off: recomputed checksums equal the real ones
        assert pkt.with_checksums().to_bytes() == raw


def test_golden_syn_fields() -> None:
    frame = frames("c-target-copied-traffic")[0]
    pkt = P.parse_ipv4_tcp(frame, 14)
    assert P.ip_ntoa(pkt.ip.src) == "10.112.0.1" and P.ip_ntoa(pkt.ip.dst) == "10.110.0.20"
    assert (pkt.tcp.sport, pkt.tcp.dport, pkt.tcp.seq) == (47258, 80, 3369216397)
    assert pkt.tcp.flags == P.SYN and pkt.tcp.window == 64240 and pkt.ip.ident == 50784
    opts = P.parse_tcp_options(pkt.options)
    assert opts == P.TcpOptions(1460, 10, True, (812517067, 0))
    assert P.build_tcp_options(1460, 10, True, (812517067, 0)) == pkt.options


def test_to_bytes_does_not_fix_checksums() -> None:
    pkt = P.parse_ipv4_tcp(frames("c-target-copied-traffic")[3], 14)
    good = pkt.to_bytes()
    pkt.ip.dst = P.ip_aton("10.0.0.9")
    stale = pkt.to_bytes()
    assert stale[12:16] == good[12:16] and stale[10:12] == good[10:12]   # checksum unchanged
    P.fill_checksums(pkt)
    fixed = pkt.to_bytes()
    assert P.checksum(fixed[:20]) == 0
    seg = fixed[20:]
    assert P.tcp_checksum(pkt.ip.src, pkt.ip.dst, seg) == 0


def test_checksum_edge_cases() -> None:
    assert P.checksum(b"") == 0xFFFF
    assert P.checksum(b"\x00\x00") == 0xFFFF
    assert P.checksum(b"\xff\xff") == 0x0000
    assert P.checksum(b"\x01") == 0xFEFF   # odd length pads with zero


def _ref_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@given(st.binary(max_size=3000))
def test_checksum_matches_reference(data: bytes) -> None:
    assert P.checksum(data) == _ref_checksum(data)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
def test_seq_arithmetic(a: int, b: int, n: int) -> None:
    c = P.seq_add(a, n)
    assert P.seq_after(c, a) and P.seq_before(a, c) and P.seq_geq(c, a) and P.seq_leq(a, c)
    assert not P.seq_after(a, a) and P.seq_geq(a, a)
    assert P.seq_diff(c, a) == n and P.seq_diff(a, c) == -n
    assert P.seq_add(b, P.seq_diff(a, b)) == a


ip_st = st.builds(
    P.IPv4Header, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
    tos=st.integers(0, 255), ident=st.integers(0, 65535), flags_frag=st.sampled_from([0, 0x4000]),
    ttl=st.integers(0, 255))
tcp_st = st.builds(
    P.TCPHeader, st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), flags=st.integers(0, 255), window=st.integers(0, 65535),
    urgent=st.integers(0, 65535), reserved=st.integers(0, 15))
opts_st = st.builds(P.build_tcp_options, st.none() | st.integers(0, 65535),
                    st.none() | st.integers(0, 14), st.booleans(),
                    st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))


@given(ip_st, tcp_st, opts_st, st.binary(max_size=200), st.binary(max_size=40).map(
    lambda b: b[:len(b) // 4 * 4]))
def test_packet_round_trip(ip: P.IPv4Header, tcp: P.TCPHeader, opts: bytes, payload: bytes,
                           ipopts: bytes) -> None:
    tcp.options = opts
    ip.options = ipopts
    pkt = P.Packet(ip, tcp, payload).with_checksums()
    raw = pkt.to_bytes()
    back = P.parse_ipv4_tcp(raw + b"\0" * 6)       # trailing Ethernet padding ignored
    assert back == pkt and back.to_bytes() == raw
    assert P.parse_tcp_options(back.options) == P.parse_tcp_options(opts)
    ts = P.get_timestamps(opts)
    if ts is not None:
        assert P.get_timestamps(P.set_timestamps(opts, 7, 9)) == (7, 9)


def test_header_errors_name_the_reason() -> None:
    good = P.parse_ipv4_tcp(frames("c-target-copied-traffic")[3], 14).to_bytes()
    cases = {
        "version": b"\x65" + good[1:],
        "ihl": b"\x44" + good[1:],
        "protocol": good[:9] + b"\x11" + good[10:],
        "doff": good[:32] + b"\x40" + good[33:],
        "truncated": good[:30],
        "fragment": good[:6] + b"\x00\x10" + good[8:],
    }
    for reason, buf in cases.items():
        with pytest.raises(P.PacketError) as err:
            P.parse_ipv4_tcp(buf)
        assert err.value.reason == reason


@given(st.binary(max_size=120))
def test_fuzz_only_packet_error(buf: bytes) -> None:
    for offset in (0, 14):
        with contextlib.suppress(P.PacketError):
            P.parse_ipv4_tcp(buf, offset)
    try:
        P.strip_ethernet(buf)
        P.parse_tcp_options(buf[:40])
    except P.PacketError:
        pass
    P.get_timestamps(buf[:40])


def test_fuzz_mutated_real_frames_only_packet_error() -> None:
    rng = random.Random(1234)
    pool = frames("c-target-copied-traffic")
    for _ in range(20000):
        buf = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        cut = bytes(buf[:rng.randrange(len(buf) + 1)])
        try:
            _etype, off = P.strip_ethernet(cut)
            pkt = P.parse_ipv4_tcp(cut, off)
            P.parse_tcp_options(pkt.options)
        except P.PacketError:
            pass


def test_ethernet_vlan_and_build() -> None:
    frame = frames("c-online-client-traffic")[0]
    tagged = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    assert P.strip_ethernet(tagged) == (P.ETH_P_IP, 18)
    assert P.parse_ipv4_tcp(tagged, 18) == P.parse_ipv4_tcp(frame, 14)
    assert P.build_ethernet(frame[:6], frame[6:12]) == frame[:14]
    assert P.mac_aton(P.mac_ntoa(frame[:6])) == frame[:6]
    with pytest.raises(P.PacketError):
        P.mac_aton("zz:00:00:00:00:00")
    with pytest.raises(P.PacketError):
        P.ip_aton("10.0.0")
    with pytest.raises(P.PacketError):
        P.strip_ethernet(b"\x00" * 13)


def test_pcap_write_read_and_errors(tmp_path: object) -> None:
    import pathlib
    d = pathlib.Path(str(tmp_path))
    src = frames("c-online-client-traffic")[:5]
    n = write_pcap(str(d / "o.pcap"), [(1.5 + i, f) for i, f in enumerate(src)])
    back = read_pcap(str(d / "o.pcap"))
    assert n == 5 and [r.data for r in back.records] == src and back.records[1].ts == 2.5
    (d / "bad.pcap").write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 30)
    with pytest.raises(PcapError, match="pcapng"):
        read_pcap(str(d / "bad.pcap"))
    (d / "cut.pcap").write_bytes((d / "o.pcap").read_bytes()[:-3])
    with pytest.raises(PcapError, match="truncated"):
        read_pcap(str(d / "cut.pcap"))
