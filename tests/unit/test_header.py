"""engine.header: the one header view and its rules, on the C captures and hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import header as H
from engine import packets as P
from engine import protocol as C
from engine.router import classify_frame
from tests.unit.vectors import NAMES, vector_frames


def good_packet(payload: bytes = b"GET /", ip_opts: bytes = b"", tcp_opts: bytes = b"") -> bytes:
    pkt = P.Packet(P.IPv4Header(P.ip_aton("10.0.0.1"), P.ip_aton("10.0.0.2"), options=ip_opts),
                   P.TCPHeader(40000, 80, 7, 9, flags=P.ACK | P.PSH, options=tcp_opts), payload)
    return pkt.with_checksums().to_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_view_agrees_with_packets_on_every_c_frame(name: str) -> None:
    for frame in vector_frames(name):
        hv = H.view(frame, 14)
        pkt = P.parse_ipv4_tcp(frame, 14)
        assert (hv.src, hv.dst, hv.sport, hv.dport) == (pkt.ip.src, pkt.ip.dst, pkt.tcp.sport,
                                                       pkt.tcp.dport)
        assert (hv.seq, hv.ack, hv.flags, hv.window) == (pkt.tcp.seq, pkt.tcp.ack,
                                                         pkt.tcp.flags, pkt.tcp.window)
        assert hv.payload_length == len(pkt.payload) and hv.ihl == pkt.ip.ihl * 4
        assert P.IPv4Header.from_view(hv, pkt.ip.options) == pkt.ip
        assert P.TCPHeader.from_view(hv, frame, 14 + hv.ihl) == pkt.tcp
        rec = C.make_record(frame, 14)
        rv = H.record_view(rec)
        assert rv == hv
        assert classify_frame(frame)[1] == hv.flags


def test_options_are_found_after_ip_options() -> None:
    raw = good_packet(b"x", ip_opts=b"\x01\x01\x01\x00", tcp_opts=b"\x01\x01\x08\x0a" + bytes(8))
    hv = H.view(raw)
    assert hv.ihl == 24 and hv.doff == 32 and hv.payload_length == 1
    assert raw[hv.ihl + hv.doff:hv.total_length] == b"x"


@pytest.mark.parametrize("corrupt, reason", [
    (lambda b: b[:19], "truncated"),
    (lambda b: b"\x65" + b[1:], "version"),
    (lambda b: b"\x44" + b[1:], "ihl"),
    (lambda b: b[:9] + b"\x11" + b[10:], "protocol"),
    (lambda b: b[:6] + b"\x00\x10" + b[8:], "fragment"),
    (lambda b: b[:25], "truncated"),
    (lambda b: b[:32] + b"\x40" + b[33:], "doff"),
    (lambda b: b[:32] + b"\xf0" + b[33:], "truncated"),
    (lambda b: b[:2] + b"\x00\x24" + b[4:], "length"),
    (lambda b: b[:2] + b"\x05\x00" + b[4:], "truncated"),
])
def test_one_rule_table(corrupt, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(P.PacketError) as err:
        H.view(corrupt(good_packet()))
    assert err.value.reason == reason


def test_first_fragment_is_a_view_padding_is_ignored() -> None:
    raw = bytearray(good_packet())
    raw[6] |= 0x20                                      # MF, offset 0
    hv = H.view(bytes(raw) + b"\0" * 6)                 # Ethernet padding after the packet
    assert hv.is_fragment and hv.payload_length == 5


def test_record_rules() -> None:
    rec = C.make_record(good_packet(), 0)
    assert H.record_view(rec).payload_length == 5
    with pytest.raises(P.PacketError, match="truncated"):
        H.record_view(rec[:63])
    short = rec[:2] + b"\x00\x20" + rec[4:]
    with pytest.raises(P.PacketError, match="length"):
        H.record_view(short)
    with pytest.raises(C.ProtocolError, match="shorter than its headers"):
        C.decode_record(short)


@given(st.binary(max_size=80))
def test_view_never_raises_anything_but_packet_error(data: bytes) -> None:
    for fn in (H.view, H.record_view):
        with contextlib.suppress(P.PacketError):
            fn(data)
