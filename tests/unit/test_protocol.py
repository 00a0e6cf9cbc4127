"""engine.protocol: byte-exact with the C channel captures, partial reads, auth, hostility."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from typing import Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import packets as P
from engine import protocol as C
from engine.protocol.wire import hmac_sha256
from engine.session.config import SessionConfig
from engine.session.table import Engine
from tests.unit.vectors import vector_frames as pcap_frames

KEY = b"k" * 32
Flow = Tuple[int, int, int, int]


def streams(name: str) -> Dict[Flow, bytes]:
    """Reassemble each TCP direction's byte stream (in-order segments; duplicates dropped)."""
    out: Dict[Flow, bytearray] = {}
    nxt: Dict[Flow, int] = {}
    for frame in pcap_frames(name):
        pkt = P.parse_ipv4_tcp(frame, P.strip_ethernet(frame)[1])
        flow = (pkt.ip.src, pkt.tcp.sport, pkt.ip.dst, pkt.tcp.dport)
        out.setdefault(flow, bytearray())
        if pkt.tcp.flags & P.SYN:
            nxt[flow] = P.seq_add(pkt.tcp.seq, 1)
        elif pkt.payload:
            assert pkt.tcp.seq == nxt[flow], "capture has a gap"
            out[flow] += pkt.payload
            nxt[flow] = P.seq_add(nxt[flow], len(pkt.payload))
    return {k: bytes(v) for k, v in out.items()}


def split_frames(data: bytes) -> List[bytes]:
    frames, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 2], "big")
        frames.append(data[pos:pos + 2 + n * C.RECORD_SIZE])
        pos += 2 + n * C.RECORD_SIZE
    return frames


CAPTURES = ["c-intercept-channel", "c-intercept-channel-faked-handshake"]


@pytest.mark.parametrize("name", CAPTURES)
def test_c_messages_decode_and_reencode_byte_exact(name: str) -> None:
    seen = 0
    for flow, data in streams(name).items():
        if flow[3] != C.DEFAULT_PORT:
            continue
        events = C.ServerChannel(None, 0.0).feed(data)
        assert events[0] == C.Hello(6)
        assert all(isinstance(e, C.Registration) for e in events[1:])
        again = C.encode_hello() + b"".join(
            C.encode_message(*e) for e in events[1:] if isinstance(e, C.Registration))
        assert again == data
        seen += len(events)
    assert seen >= 3


@pytest.mark.parametrize("name", CAPTURES)
def test_c_frames_decode_and_reencode_byte_exact(name: str) -> None:
    total = 0
    for flow, data in streams(name).items():
        if flow[1] != C.DEFAULT_PORT or not data:
            continue
        events = C.ClientChannel(None, 0.0).feed(data)
        assert all(isinstance(e, C.Response) for e in events)
        for frame in split_frames(data):
            recs = [frame[2 + i * 64: 66 + i * 64] for i in range((len(frame) - 2) // 64)]
            assert C.encode_frame(recs) == frame
            for rec in recs:
                assert C.record_from_packet(C.decode_record(rec)) == rec
        total += len(events)
    assert total >= 10


def test_make_record_matches_c_intercept() -> None:
    """Every target response in the target capture appears byte-identical as a C record."""
    records = set()
    for flow, data in streams("c-intercept-channel").items():
        if flow[1] == C.DEFAULT_PORT:
            records |= {e.raw for e in C.ClientChannel(None, 0.0).feed(data)
                        if isinstance(e, C.Response)}
    responses = 0
    for frame in pcap_frames("c-target-copied-traffic"):
        off = P.strip_ethernet(frame)[1]
        pkt = P.parse_ipv4_tcp(frame, off)
        if pkt.tcp.sport == 80:
            responses += 1
            assert C.make_record(frame, off) in records
            assert C.record_from_packet(pkt) == C.make_record(frame, off)
    assert responses == 48


def test_partial_reads_byte_by_byte() -> None:
    data = next(d for f, d in streams("c-intercept-channel").items() if f[1] == C.DEFAULT_PORT)
    whole = C.ClientChannel(None, 0.0).feed(data)
    chan = C.ClientChannel(None, 0.0)
    pieces = [e for i in range(len(data)) for e in chan.feed(data[i:i + 1])]
    assert pieces == whole
    up = next(d for f, d in streams("c-intercept-channel").items() if f[3] == C.DEFAULT_PORT)
    server = C.ServerChannel(None, 0.0)
    assert [e for i in range(len(up)) for e in server.feed(up[i:i + 1])] == \
        C.ServerChannel(None, 0.0).feed(up)


def test_decoded_record_fields() -> None:
    data = next(d for f, d in streams("c-intercept-channel").items() if f[1] == C.DEFAULT_PORT)
    first = C.ClientChannel(None, 0.0).feed(data)[0]
    assert isinstance(first, C.Response)
    pkt = first.packet
    assert P.ip_ntoa(pkt.ip.src) == "10.110.0.20" and pkt.tcp.flags == P.SYN | P.ACK
    assert P.parse_tcp_options(pkt.options).mss == 1460


# ---------------------------------------------------------------- authentication


def handshake(client: C.ClientChannel, server: C.ServerChannel) -> Tuple[list, list]:
    sev: list = []
    cev: list = []
    for _ in range(4):
        cev += client.feed(server.take_output())
        sev += server.feed(client.take_output())
    return cev, sev


def test_auth_success_then_c_channel() -> None:
    client, server = C.ClientChannel(KEY, 0.0), C.ServerChannel(KEY, 0.0)
    client.register(1, 2, 3, 4)
    assert client.take_output() == b""          # nothing, not even the route, before auth
    cev, sev = handshake(client, server)
    assert C.Authenticated() in cev and C.Authenticated() in sev
    assert sev[-2:] == [C.Hello(6), C.Registration(C.CLIENT_ADD, 1, 2, 3, 4)]
    assert server.ready
    rec = C.record_from_packet(P.Packet(P.IPv4Header(5, 6, total_length=40), P.TCPHeader(80, 9)))
    got = client.feed(C.encode_frame([rec]))
    assert isinstance(got[0], C.Response) and got[0].raw == rec


def test_auth_wrong_key_rejected_both_ways() -> None:
    client, server = C.ClientChannel(b"x" * 32, 0.0), C.ServerChannel(KEY, 0.0)
    client.register(1, 2, 3, 4)
    _cev, sev = handshake(client, server)
    assert sev == [C.Closed("bad authentication code", True)] and not server.ready
    assert server.take_output() == C.PROOF_MAGIC[:0]   # no proof, no records


def test_a_replayed_handshake_is_refused() -> None:
    """F3: a peer that recorded a good tcpcopy's RESPONSE and plays it to intercept again gets
    no proof and no record: the server's nonce is fresh for each connection."""
    client, first = C.ClientChannel(KEY, 0.0), C.ServerChannel(KEY, 0.0)
    client.feed(first.take_output())
    recorded = client.take_output()
    assert C.Authenticated() in first.feed(recorded)
    again = C.ServerChannel(KEY, 0.0)
    challenge = again.take_output()
    assert again.feed(recorded) == [C.Closed("bad authentication code", True)]
    assert again.take_output() == b"" and not again.ready and len(challenge) == 20


def test_keyless_c_tcpcopy_rejected_by_keyed_intercept() -> None:
    server = C.ServerChannel(KEY, 0.0)
    assert server.take_output().startswith(C.CHALLENGE_MAGIC)
    events = server.feed(C.encode_hello() + C.encode_message(1, 1, 2, 3, 4))
    assert events == [C.Closed("peer did not authenticate", True)] and server.closed
    assert server.feed(b"more") == []


def test_silent_peer_times_out() -> None:
    server = C.ServerChannel(KEY, 10.0)
    assert server.check_timeout(10.5) is None
    assert server.check_timeout(10.0 + C.AUTH_TIMEOUT) == C.Closed("authentication timeout", True)
    assert C.AUTH_TIMEOUT < 1.0


def test_bytes_after_the_deadline_close_the_peer_at_once() -> None:
    """A peer whose first bytes arrive after the auth deadline but before the timer fired:
    the read itself must report the close (it used to be closed silently, socket left open)."""
    server = C.ServerChannel(KEY, 10.0)
    client = C.ClientChannel(KEY, 10.0)
    client.feed(server.take_output(), 10.0)
    events = server.feed(client.take_output(), 10.0 + C.AUTH_TIMEOUT + 0.01)
    assert events == [C.Closed("authentication timeout", True)] and server.closed
    assert server.check_timeout(20.0) is None          # reported once, by the read


def test_fake_intercept_gets_no_routes() -> None:
    client = C.ClientChannel(KEY, 0.0)
    client.register(1, 2, 3, 4)
    ev = client.feed(C.CHALLENGE_MAGIC + b"n" * 16)
    assert ev == [] and client.take_output().startswith(C.RESPONSE_MAGIC)
    ev = client.feed(C.PROOF_MAGIC + b"\0" * 32)
    assert ev == [C.Closed("intercept proof is wrong", True)]
    assert client.take_output() == b""


def test_keyed_client_against_keyless_intercept_times_out() -> None:
    client = C.ClientChannel(KEY, 0.0)
    assert client.check_timeout(100.0) == C.Closed("intercept did not authenticate", True)


def test_no_key_is_byte_identical_to_c() -> None:
    client = C.ClientChannel(None, 0.0)
    client.register(0x0A700001, 47258, 0x0A6E0014, 80)
    expected = streams("c-intercept-channel")
    up = next(d for f, d in expected.items() if f[3] == C.DEFAULT_PORT and f[1] == 54316)
    assert client.take_output() == up[:28]
    assert C.ServerChannel(None, 0.0).take_output() == b""


# ---------------------------------------------------------------- hostile input


def test_server_hostile_messages_counted_then_closed() -> None:
    server = C.ServerChannel(None, 0.0)
    assert server.feed(C.encode_hello()) == [C.Hello(6)]
    ev = server.feed(C.encode_message(9, 1, 2, 3, 4) + C.encode_message(1, 0, 2, 3, 4)
                     + C.encode_message(1, 1, 2, 3, 4))
    assert ev == [C.Malformed("unknown msg type:9"),
                  C.Malformed("registration with a zero address or port"),
                  C.Registration(1, 1, 2, 3, 4)]
    ev = server.feed(b"\xff" * 14 * C.MAX_MALFORMED_RUN)
    assert ev[-1] == C.Closed(f"{C.MAX_MALFORMED_RUN} malformed messages in a row")
    assert len(ev) == C.MAX_MALFORMED_RUN


def test_server_first_message_not_hello_closes() -> None:
    ev = C.ServerChannel(None, 0.0).feed(C.encode_message(1, 1, 2, 3, 4))
    assert ev == [C.Closed("client too old for intercept")]


def test_client_hostile_frames() -> None:
    rec = C.record_from_packet(P.Packet(P.IPv4Header(5, 6, total_length=40), P.TCPHeader(80, 9)))
    client = C.ClientChannel(None, 0.0)
    ev = client.feed(b"\x00\x00" + C.encode_frame([b"\x99" * 64, rec]))
    assert [type(e) for e in ev] == [C.Malformed, C.Malformed, C.Response]
    ev = client.feed(b"\x00\x11" + rec * 17)
    assert ev == [C.Closed("frame count 17 > 16")] and client.closed
    with pytest.raises(C.ProtocolError):
        client.register(1, 2, 3, 4)


def test_encoder_misuse_raises_protocol_error(tmp_path: object) -> None:
    with pytest.raises(C.ProtocolError):
        C.encode_message(1, 1, 70000, 3, 4)
    with pytest.raises(C.ProtocolError):
        C.encode_frame([])
    with pytest.raises(C.ProtocolError, match="nokey"):
        C.load_key(os.path.join(str(tmp_path), "nokey"))
    short = os.path.join(str(tmp_path), "short")
    with open(short, "wb") as fh:
        fh.write(b"abc\n")
    with pytest.raises(C.ProtocolError, match="shorter"):
        C.load_key(short)


u32 = st.integers(1, 2**32 - 1)
port = st.integers(1, 65535)


@given(st.lists(st.tuples(st.sampled_from([1, 2]), u32, port, u32, port), max_size=30),
       st.integers(1, 40))
def test_messages_round_trip_any_chunking(regs: list, chunk: int) -> None:
    client = C.ClientChannel(None, 0.0)
    for kind, cip, cport, tip, tport in regs:
        client.register(cip, cport, tip, tport, kind)
    data = client.take_output()
    server = C.ServerChannel(None, 0.0)
    events = [e for i in range(0, len(data), chunk) for e in server.feed(data[i:i + chunk])]
    assert events == [C.Hello(6)] + [C.Registration(*r) for r in regs]


@given(st.lists(st.tuples(u32, u32, port, port, st.integers(0, 255)), min_size=1, max_size=40),
       st.integers(1, 100))
def test_frames_round_trip_any_chunking(hdrs: list, chunk: int) -> None:
    recs = [C.record_from_packet(P.Packet(P.IPv4Header(s, d, total_length=40),
                                          P.TCPHeader(sp, dp, flags=f)))
            for s, d, sp, dp, f in hdrs]
    data = b"".join(C.encode_frame(recs[i:i + 16]) for i in range(0, len(recs), 16))
    client = C.ClientChannel(None, 0.0)
    events = [e for i in range(0, len(data), chunk) for e in client.feed(data[i:i + chunk])]
    assert [e.raw for e in events if isinstance(e, C.Response)] == recs


@settings(max_examples=300)
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_decoders_never_raise(data: bytes, keyed: bool) -> None:
    key = KEY if keyed else None
    for chan in (C.ServerChannel(key, 0.0), C.ClientChannel(key, 0.0)):
        chan.feed(data[:7], 0.1)
        chan.feed(data[7:], 0.2)


def test_fuzz_mutated_streams_never_raise() -> None:
    rng = random.Random(7)
    all_streams = list(streams("c-intercept-channel").values())
    for _ in range(3000):
        buf = bytearray(rng.choice(all_streams))
        for _ in range(rng.randint(1, 5)):
            if buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        server, client = C.ServerChannel(None, 0.0), C.ClientChannel(None, 0.0)
        pos = 0
        while pos < len(buf):
            step = rng.randint(1, 200)
            server.feed(bytes(buf[pos:pos + step]))
            client.feed(bytes(buf[pos:pos + step]))
            pos += step


# ---------------------------------------------------------------- raw-record path (tcpcopy)


def raw_feed(chan: C.ClientChannel, data: bytes) -> Tuple[List[bytes], list]:
    recs: List[bytes] = []
    events = chan.feed_raw(data, 0.0, lambda got, _now: recs.extend(got))
    return recs, events


def as_raw(events: list) -> Tuple[List[bytes], list]:
    return ([e.raw for e in events if isinstance(e, C.Response)],
            [e for e in events if not isinstance(e, C.Response)])


@pytest.mark.parametrize("name", CAPTURES)
def test_feed_raw_equals_feed_on_c_captures_whole_and_byte_by_byte(name: str) -> None:
    for flow, data in streams(name).items():
        if flow[1] != C.DEFAULT_PORT or not data:
            continue
        want = as_raw(C.ClientChannel(None, 0.0).feed(data))
        assert want[0] and raw_feed(C.ClientChannel(None, 0.0), data) == want
        chan = C.ClientChannel(None, 0.0)
        recs: List[bytes] = []
        events: list = []
        for i in range(len(data)):
            r, e = raw_feed(chan, data[i:i + 1])
            recs += r
            events += e
        assert (recs, events) == want


def test_feed_raw_hostile_frames_like_feed() -> None:
    """Same framing as feed; records go out unchecked (the engine checks them, once)."""
    good = C.record_from_packet(P.Packet(P.IPv4Header(5, 6, total_length=40), P.TCPHeader(80, 9)))
    udp = bytearray(good)
    udp[9] = 17
    bad_doff = bytearray(good)
    bad_doff[32] = 0x40
    data = (C.encode_frame([good, bytes(udp), bytes(bad_doff), good]) + b"\0\0"
            + C.encode_frame([good]) + b"\0\x11" + good)
    want = as_raw(C.ClientChannel(None, 0.0).feed(data))
    assert want[0] == [good, good, good]
    assert [type(e) for e in want[1]] == [C.Malformed, C.Malformed, C.Malformed, C.Closed]
    recs, events = raw_feed(C.ClientChannel(None, 0.0), data)
    assert recs == [good, bytes(udp), bytes(bad_doff), good, good]
    assert [type(e) for e in events] == [C.Malformed, C.Closed]     # empty frame, count 17
    eng = Engine(SessionConfig([]))
    for rec in recs:
        eng.on_response_record(rec, 0.0)
    assert eng.counters["channel_malformed"] == 2 and eng.counters["resp"] == 3


def test_feed_raw_after_auth() -> None:
    client, server = C.ClientChannel(KEY, 0.0), C.ServerChannel(KEY, 0.0)
    handshake(client, server)
    rec = C.record_from_packet(P.Packet(P.IPv4Header(5, 6, total_length=40), P.TCPHeader(80, 9)))
    assert raw_feed(client, C.encode_frame([rec, rec])) == ([rec, rec], [])


@pytest.mark.parametrize("key_len", [0, 1, 32, 63, 64, 65, 200])
def test_the_channel_hmac_is_hmacs(key_len: int) -> None:
    """engine.protocol.wire.hmac_sha256 (no hashlib/hmac under PyPy: their OpenSSL load cost
    every daemon start ~0.08 s) equals the stdlib's, RFC 4231 case 2 included."""
    rng = random.Random(key_len)
    for _ in range(20):
        key = bytes(rng.randrange(256) for _ in range(key_len))
        msg = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
