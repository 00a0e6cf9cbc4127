"""The channel's wire format: message/record/frame codecs, events, the auth MACs (pure).

See ``engine.protocol`` for the format and the hostile-input policy."""

from __future__ import annotations

import struct
from typing import NamedTuple, Sequence, Union

# SHA-256 without hashlib under PyPy: its hashlib loads OpenSSL through cffi (with `hmac`,
# ~0.08 s of CPU at every start of a daemon, for two MACs per channel connection). PyPy's
# `_sha256` is its own; CPython's (up to 3.11; `_sha2` since) is what hashlib's falls back to.
try:
    from _sha256 import sha256
except ImportError:   # CPython 3.12+: hashlib costs little to import there
    from hashlib import sha256

from engine import INTERNAL_VERSION
from engine.header import RECORD_TCP, PacketError, record_view
from engine.packets import IPv4Header, Packet, TCPHeader

CLIENT_ADD, CLIENT_DEL = 1, 2
DEFAULT_PORT = 36524
MSG_SIZE = 14
RECORD_SIZE = 64
COMB_MAX = 16
MAX_MALFORMED_RUN = 16
AUTH_TIMEOUT = 0.8
MIN_KEY_BYTES = 16

MSG = struct.Struct("!IHHIH")
_COUNT = struct.Struct("!H")
NONCE_SIZE, MAC_SIZE = 16, 32
CHALLENGE_MAGIC, RESPONSE_MAGIC, PROOF_MAGIC = b"LCH1", b"LCR1", b"LCP1"
CHALLENGE_SIZE, RESPONSE_SIZE, PROOF_SIZE = 20, 52, 36
_CLIENT_LABEL, _SERVER_LABEL = b"labctl-channel client", b"labctl-channel server"


class ProtocolError(ValueError):
    """Caller misuse of the channel API (bad field values, unreadable key file)."""


# ---------------------------------------------------------------- events


class Hello(NamedTuple):
    version: int


class Registration(NamedTuple):
    kind: int            # CLIENT_ADD or CLIENT_DEL
    client_ip: int
    client_port: int
    target_ip: int
    target_port: int


class Authenticated(NamedTuple):
    pass


class Malformed(NamedTuple):
    reason: str


class Closed(NamedTuple):
    reason: str
    auth_failed: bool = False


class Response(NamedTuple):
    packet: Packet       # ip.total_length is the original one: payload length is derivable
    raw: bytes           # the 64-byte record as received


ServerEvent = Union[Hello, Registration, Authenticated, Malformed, Closed]
ClientEvent = Union[Response, Authenticated, Malformed, Closed]


# ---------------------------------------------------------------- encoders


def encode_message(kind: int, client_ip: int, client_port: int, target_ip: int,
                   target_port: int) -> bytes:
    try:
        return MSG.pack(client_ip, client_port, kind, target_ip, target_port)
    except struct.error as exc:
        raise ProtocolError(f"bad channel message field: {exc}") from None


def encode_hello(version: int = INTERNAL_VERSION) -> bytes:
    return encode_message(version, 0, 0, 0, 0)


def make_record(buf: bytes, ip_offset: int = 0) -> bytes:
    """64-byte record from a captured IPv4/TCP packet at ``ip_offset`` (already validated)."""
    tcp_off = ip_offset + (buf[ip_offset] & 0xF) * 4
    tcp_len = min((buf[tcp_off + 12] >> 4) * 4, 44)
    rec = bytes(buf[ip_offset:ip_offset + 20]) + bytes(buf[tcp_off:tcp_off + tcp_len])
    return rec + bytes(RECORD_SIZE - len(rec))


def record_from_packet(packet: Packet) -> bytes:
    raw = packet.ip.pack()[:20] + packet.tcp.pack()[:44]
    return raw + bytes(RECORD_SIZE - len(raw))


def encode_frame(records: Sequence[bytes]) -> bytes:
    if not 1 <= len(records) <= COMB_MAX:
        raise ProtocolError(f"a frame holds 1..{COMB_MAX} records, not {len(records)}")
    return _COUNT.pack(len(records)) + b"".join(records)


_RECORD_PROBLEMS = {"truncated": "record is not an IPv4/TCP header",
                    "version": "record is not an IPv4/TCP header",
                    "protocol": "record is not an IPv4/TCP header",
                    "ihl": "record has a bad IHL or DOFF", "doff": "record has a bad IHL or DOFF",
                    "fragment": "record is a non-first fragment",
                    "length": "record's total length is shorter than its headers"}


def record_problem(exc: PacketError) -> str:
    """The ``Malformed`` text for a record ``engine.header.record_view`` refused."""
    return _RECORD_PROBLEMS.get(exc.reason, str(exc))


def decode_record(rec: bytes) -> Packet:
    """Parse a 64-byte record into a Packet (payload empty; IP options are not carried, the
    original IHL is kept). Checked by ``engine.header.record_view``. Raises ProtocolError."""
    try:
        hv = record_view(rec)
    except PacketError as exc:
        raise ProtocolError(record_problem(exc)) from None
    return Packet(IPv4Header.from_view(hv), TCPHeader.from_view(hv, rec, RECORD_TCP), b"")


def load_key(path: str) -> bytes:
    """The shared secret from a key file (surrounding whitespace stripped)."""
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise ProtocolError(f"--key-file {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise ProtocolError(f"--key-file {path}: key shorter than {MIN_KEY_BYTES} bytes")
    return key


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104: block size 64), equal to ``hmac.new(key, msg, sha256)``."""
    if len(key) > 64:
        key = sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
    return sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def _mac(key: bytes, label: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    return hmac_sha256(key, label + nonce_s + nonce_c)


def client_mac(key: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    """tcpcopy's proof: HMAC(key, "labctl-channel client" + nonce_s + nonce_c)."""
    return _mac(key, _CLIENT_LABEL, nonce_s, nonce_c)


def server_mac(key: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    """intercept's proof: HMAC(key, "labctl-channel server" + nonce_s + nonce_c)."""
    return _mac(key, _SERVER_LABEL, nonce_s, nonce_c)
