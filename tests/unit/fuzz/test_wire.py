"""F1 fuzzing of the wire-format parsers: packet and record headers, the session engine's
intake (client packets, response records, timers), the capture-file reader, and the channel
decoders of both ends (see ``tests/unit/fuzz/__init__.py`` for the rules)."""

from __future__ import annotations

import io
import struct
from typing import List, Tuple

from hypothesis import given
from hypothesis import strategies as st

from engine import header
from engine.packets import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    IPv4Header,
    Packet,
    TCPHeader,
    build_tcp_options,
    fill_checksums,
    ip_aton,
)
from engine.pcapfile import PcapError, iter_pcap
from engine.pkterror import PacketError
from engine.protocol import (
    CHALLENGE_MAGIC,
    PROOF_MAGIC,
    RESPONSE_MAGIC,
    ClientChannel,
    ServerChannel,
    client_mac,
    server_mac,
)
from engine.session.config import Route, SessionConfig
from engine.session.table import Engine
from tests.unit.fuzz.shared import CHUNKS, EDITS, FUZZ, chunked, mutate, timed

KEY = b"k" * 32
NONCE_S, NONCE_C = b"s" * 16, b"c" * 16
CLIENT, ONLINE, TARGET = ip_aton("10.78.1.10"), ip_aton("10.77.1.10"), ip_aton("10.77.1.20")
FAKE = ip_aton("10.79.1.1")


# ------------------------------------------------------------------ packets and records

def packet(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes = b"", opts: bytes = b"") -> bytes:
    p = Packet(IPv4Header(src, dst, ident=7),
               TCPHeader(sport, dport, seq, ack, flags=flags, window=502, options=opts), payload)
    fill_checksums(p)
    return p.to_bytes()


FLAGS = st.sampled_from([SYN, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, SYN | ACK, 0, 0xFF])
SEQ = st.integers(0, 0xFFFFFFFF)
OPTS = st.one_of(st.just(b""), st.just(build_tcp_options(1460, 7, True, (111, 0))),
                 st.binary(max_size=40).map(lambda b: b[:len(b) // 4 * 4]))


@st.composite
def client_packets(draw: st.DrawFn) -> bytes:
    """A client->online packet, valid or mutated, or random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return bytes(draw(st.binary(max_size=120)))
    sport = draw(st.sampled_from([40000, 40001, draw(st.integers(0, 65535))]))
    raw = packet(CLIENT, ONLINE, sport, draw(st.sampled_from([80, 81])), draw(SEQ), draw(SEQ),
                 draw(FLAGS), draw(st.binary(max_size=200)), draw(OPTS))
    return mutate(raw, draw(EDITS))


@st.composite
def response_records(draw: st.DrawFn) -> bytes:
    """A target->fake-client response record (64 bytes), valid or mutated, or random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return bytes(draw(st.binary(min_size=60, max_size=68)))
    opts = draw(OPTS)[:24]
    tcp = TCPHeader(8080, draw(st.sampled_from([40000, 40001])), draw(SEQ), draw(SEQ),
                    flags=draw(FLAGS), window=1000, options=opts, doff=5 + len(opts) // 4).pack()
    ip = IPv4Header(TARGET, FAKE, total_length=20 + len(tcp) + draw(st.integers(0, 2000))).pack()
    rec = (ip + tcp + b"\x00" * 64)[:64]
    edits = draw(st.lists(st.tuples(st.just(0), st.integers(0, 63), st.integers(1, 255)),
                          max_size=4))
    return mutate(rec, edits)


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 30), EDITS)
def test_header_fields_raise_only_packet_error(data: bytes, offset: int,
                                               edits: List[Tuple[int, int, int]]) -> None:
    valid = packet(CLIENT, ONLINE, 40000, 80, 1, 2, ACK | PSH, data[:50])
    for buf in (data, mutate(valid, edits), data[:64].ljust(64, b"\0")):
        for fn, args in ((header.fields, (buf, min(offset, len(buf)))), (header.view, (buf,)),
                         (header.record_fields, (buf,)), (header.record_view, (buf,))):
            try:
                timed("header", fn, *args, tries=3)
            except PacketError as exc:
                assert exc.reason in {"truncated", "version", "ihl", "protocol", "fragment",
                                      "doff", "length"}, exc.reason


def session_engine() -> Engine:
    return Engine(SessionConfig([Route(ONLINE, 80, TARGET, 8080)], fake_ips=[FAKE]))


@FUZZ
@given(st.lists(st.one_of(client_packets().map(lambda p: ("c", p)),
                          response_records().map(lambda r: ("r", r)),
                          st.floats(0, 120).map(lambda t: ("t", t))), max_size=40))
def test_session_intake_never_raises(events: List[Tuple[str, object]]) -> None:
    eng = session_engine()
    now = 0.0
    for kind, value in events:
        now += 0.001
        if kind == "c":
            timed("session", eng.on_client_packet, value, now)
        elif kind == "r":
            timed("session", eng.on_response_record, value, now)
        else:
            now += value                                            # type: ignore[operator]
            timed("session", eng.on_timer, now)
    timed("session", eng.shutdown, now + 1)
    assert eng.counters["captured"] == sum(1 for k, _ in events if k == "c")


# ------------------------------------------------------------------ capture files

PCAP_HEAD = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


@st.composite
def pcaps(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return bytes(draw(st.binary(max_size=300)))
    out = bytearray(PCAP_HEAD)
    for _ in range(draw(st.integers(0, 5))):
        data = draw(st.binary(max_size=80))
        out += struct.pack("<IIII", draw(st.integers(0, 2**32 - 1)), 0, len(data), len(data))
        out += data
    return mutate(bytes(out), draw(EDITS))


def read_all(data: bytes) -> int:
    return sum(1 for _ in iter_pcap(io.BytesIO(data), "fuzz.pcap"))


@FUZZ
@given(pcaps())
def test_pcap_reader_raises_only_pcap_error(data: bytes) -> None:
    try:
        timed("pcap", read_all, data, tries=3)
    except PcapError as exc:
        assert str(exc).startswith("fuzz.pcap: ")


# ------------------------------------------------------------------ the channel

def valid_proof() -> bytes:
    return PROOF_MAGIC + server_mac(KEY, NONCE_S, NONCE_C)


def valid_response() -> bytes:
    return RESPONSE_MAGIC + NONCE_C + client_mac(KEY, NONCE_S, NONCE_C)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """Combined frames (count + 64-byte records), some with absurd counts, then mutated."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 4))):
        recs = draw(st.lists(response_records(), min_size=0, max_size=3))
        count = draw(st.sampled_from([len(recs), len(recs), 0, 17, 0xFFFF]))
        out += struct.pack("!H", count) + b"".join(r[:64].ljust(64, b"\0") for r in recs)
    return mutate(bytes(out), draw(EDITS))



@FUZZ
@given(st.sampled_from(["keyless", "keyed"]), frames(), st.binary(max_size=60), CHUNKS)
def test_client_channel_decoder_never_raises(mode: str, body: bytes, junk: bytes,
                                            sizes: List[int]) -> None:
    key = None if mode == "keyless" else KEY
    ch, raw = ClientChannel(key, 0.0, nonce=NONCE_C), ClientChannel(key, 0.0, nonce=NONCE_C)
    stream = body if key is None else CHALLENGE_MAGIC + NONCE_S + valid_proof() + body
    if junk and junk[0] % 4 == 0:
        stream = junk + stream           # a server that starts wrong
    for chunk in chunked(stream, sizes):
        timed("channel", ch.feed, chunk, 0.5)
        timed("channel", raw.feed_raw, chunk, 0.5, lambda recs, now: None)
        ch.take_output()
        raw.take_output()


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    out = bytearray()
    if draw(st.booleans()):
        out += struct.pack("!4sHH4sH", b"\0" * 4, 0, 6, b"\0" * 4, 0)        # hello
    for _ in range(draw(st.integers(0, 6))):
        out += struct.pack("!IHHIH", draw(SEQ), draw(st.integers(0, 65535)),
                           draw(st.integers(0, 8)), draw(SEQ), draw(st.integers(0, 65535)))
    return mutate(bytes(out), draw(EDITS))


@FUZZ
@given(st.sampled_from(["keyless", "keyed", "keyed-valid"]), messages(), CHUNKS)
def test_server_channel_decoder_never_raises(mode: str, body: bytes, sizes: List[int]) -> None:
    ch = ServerChannel(None if mode == "keyless" else KEY, 0.0, nonce=NONCE_S)
    stream = valid_response() + body if mode == "keyed-valid" else body
    for chunk in chunked(stream, sizes):
        timed("channel", ch.feed, chunk, 0.5)
        ch.take_output()
    ch.check_timeout(100.0)

