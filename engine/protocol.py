"""The tcpcopy <-> intercept channel, sans-I/O and byte-exact with the C tools (study §2).

Wire format (no key configured: byte-identical to tcpcopy 1.3.0 / intercept 1.0.0):
- tcpcopy -> intercept: 14-byte messages ``!4sHH4sH`` = client ip, client port, type, target ip,
  target port. The first message of a connection is the version hello: type 6, other fields 0.
  Then CLIENT_ADD (1) / CLIENT_DEL (2) registrations.
- intercept -> tcpcopy: combined frames = 2-byte big-endian count N (1..16) + N 64-byte records;
  a record = first 20 bytes of the response's IP header + TCP header (options included, cut at
  44 bytes) zero-padded to 64.

Authentication (only when BOTH sides have a key; labctl always sets one), before any C bytes:
  intercept -> tcpcopy  CHALLENGE  b"LCH1" + nonce_s(16)                                 20 B
  tcpcopy -> intercept  RESPONSE   b"LCR1" + nonce_c(16) + HMAC(key, "labctl-channel client"
                                   + nonce_s + nonce_c)                                  52 B
  intercept -> tcpcopy  PROOF      b"LCP1" + HMAC(key, "labctl-channel server" + nonce_s + nonce_c)
                                                                                         36 B
Then the plain C channel follows (hello, registrations / frames). The server closes a peer that
sends anything else, a wrong HMAC, or nothing within ``AUTH_TIMEOUT`` s, and never sends it a
record; the client closes a server whose proof is wrong and never sends it a route. Nonces are
fresh per connection (os.urandom), so a recorded exchange cannot be replayed.

Hostile-input policy (decoders never raise; ``ProtocolError`` is only for caller misuse):
- server side: a first message that is not a hello -> ``Closed`` ("client too old");
  an unknown type or a registration with a zero address/port -> ``Malformed``, skipped (messages
  are fixed-size, so framing cannot drift); ``MAX_MALFORMED_RUN`` malformed messages in a row ->
  ``Closed``.
- client side: frame count N == 0 -> ``Malformed``, skipped; N > 16 -> ``Closed`` (the stream
  can no longer be framed; the caller reconnects); a record that is not IPv4/TCP -> ``Malformed``,
  skipped (the frame boundary is still known).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

from engine import INTERNAL_VERSION
from engine.packets import IPPROTO_TCP, IPv4Header, Packet, TCPHeader

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


def decode_record(rec: bytes) -> Packet:
    """Parse a 64-byte record into a Packet (payload empty). Raises ProtocolError."""
    if len(rec) != RECORD_SIZE or rec[0] >> 4 != 4 or rec[9] != IPPROTO_TCP:
        raise ProtocolError("record is not an IPv4/TCP header")
    doff = rec[32] >> 4
    if doff < 5 or (rec[0] & 0xF) < 5:
        raise ProtocolError("record has a bad IHL or DOFF")
    ip = IPv4Header.unpack(bytes([0x45]) + rec[1:20])
    ip.ihl = rec[0] & 0xF            # IP options are not carried; keep the original IHL
    tcp = TCPHeader.unpack(rec[20:20 + min(doff * 4, 44)] + bytes(max(0, doff * 4 - 44)))
    return Packet(ip, tcp, b"")


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


def _mac(key: bytes, label: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    return hmac.new(key, label + nonce_s + nonce_c, hashlib.sha256).digest()


# ---------------------------------------------------------------- server (intercept) side


class ServerChannel:
    """One accepted tcpcopy connection. feed() bytes in, events out; take_output() bytes out."""

    def __init__(self, key: Optional[bytes], now: float, nonce: Optional[bytes] = None) -> None:
        self._key = key
        self._buf = bytearray()
        self._out = bytearray()
        self._closed: Optional[Closed] = None
        self._seen_hello = False
        self._bad_run = 0
        self.deadline: Optional[float] = None
        self.version: Optional[int] = None
        if key is None:
            self.authenticated = True
            self._nonce = b""
        else:
            self.authenticated = False
            self._nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
            self._out += CHALLENGE_MAGIC + self._nonce
            self.deadline = now + AUTH_TIMEOUT

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def ready(self) -> bool:
        """Authenticated and hello seen: records may be sent to this peer."""
        return self.authenticated and self._seen_hello and self._closed is None

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def check_timeout(self, now: float) -> Optional[Closed]:
        if self._closed is None and not self.authenticated and self.deadline is not None \
                and now >= self.deadline:
            return self._close("authentication timeout", auth_failed=True)
        return None

    def _close(self, reason: str, auth_failed: bool = False) -> Closed:
        self._closed = Closed(reason, auth_failed)
        self._buf.clear()
        return self._closed

    def feed(self, data: bytes, now: float = 0.0) -> List[ServerEvent]:
        if self._closed is not None:
            return []
        self._buf += data
        events: List[ServerEvent] = []
        if not self.authenticated and (self.check_timeout(now) is not None
                                       or not self._auth(events)):
            return events
        buf = self._buf
        pos, end = 0, len(buf) - MSG_SIZE
        while pos <= end and self._closed is None:
            ev = self._message(MSG.unpack_from(buf, pos))
            pos += MSG_SIZE
            if ev is not None:
                events.append(ev)
        if self._closed is None:
            del buf[:pos]
        return events

    def _auth(self, events: List[ServerEvent]) -> bool:
        buf = self._buf
        head = bytes(buf[:4])
        if head != RESPONSE_MAGIC[:len(head)]:
            events.append(self._close("peer did not authenticate", auth_failed=True))
            return False
        if len(buf) < RESPONSE_SIZE:
            return False
        nonce_c, mac = bytes(buf[4:20]), bytes(buf[20:RESPONSE_SIZE])
        assert self._key is not None
        if not hmac.compare_digest(mac, _mac(self._key, _CLIENT_LABEL, self._nonce, nonce_c)):
            events.append(self._close("bad authentication code", auth_failed=True))
            return False
        del buf[:RESPONSE_SIZE]
        self.authenticated, self.deadline = True, None
        self._out += PROOF_MAGIC + _mac(self._key, _SERVER_LABEL, self._nonce, nonce_c)
        events.append(Authenticated())
        return True

    def _message(self, fields: Tuple[int, int, int, int, int]) -> Optional[ServerEvent]:
        cip, cport, kind, tip, tport = fields
        if not self._seen_hello:
            if cip or cport or tip or tport:
                return self._close("client too old for intercept")
            self._seen_hello, self.version = True, kind
            return Hello(kind)
        if kind in (CLIENT_ADD, CLIENT_DEL) and cip and cport and tip and tport:
            self._bad_run = 0
            return Registration(kind, cip, cport, tip, tport)
        self._bad_run += 1
        if self._bad_run >= MAX_MALFORMED_RUN:
            return self._close(f"{self._bad_run} malformed messages in a row")
        if kind in (CLIENT_ADD, CLIENT_DEL):
            return Malformed("registration with a zero address or port")
        return Malformed(f"unknown msg type:{kind}")


# ---------------------------------------------------------------- client (tcpcopy) side


class ClientChannel:
    """One tcpcopy connection to an intercept. register() queues messages (sent once
    authenticated), feed() turns frames into Response events, take_output() drains bytes."""

    def __init__(self, key: Optional[bytes], now: float, nonce: Optional[bytes] = None,
                 version: int = INTERNAL_VERSION) -> None:
        self._key = key
        self._buf = bytearray()
        self._out = bytearray()
        self._pending = bytearray()
        self._closed: Optional[Closed] = None
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        self._server_nonce = b""
        self._want: Optional[int] = None   # record bytes still expected in the current frame
        self._hello = encode_hello(version)
        self.deadline: Optional[float] = None
        if key is None:
            self.authenticated = True
            self._out += self._hello
        else:
            self.authenticated = False
            self.deadline = now + AUTH_TIMEOUT * 4   # a keyless C intercept never challenges

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def register(self, client_ip: int, client_port: int, target_ip: int, target_port: int,
                 kind: int = CLIENT_ADD) -> None:
        if self._closed is not None:
            raise ProtocolError("register() on a closed channel")
        msg = encode_message(kind, client_ip, client_port, target_ip, target_port)
        (self._out if self.authenticated else self._pending).extend(msg)

    def check_timeout(self, now: float) -> Optional[Closed]:
        if self._closed is None and not self.authenticated and self.deadline is not None \
                and now >= self.deadline:
            return self._close("intercept did not authenticate", auth_failed=True)
        return None

    def _close(self, reason: str, auth_failed: bool = False) -> Closed:
        self._closed = Closed(reason, auth_failed)
        self._buf.clear()
        self._pending.clear()
        return self._closed

    def feed(self, data: bytes, now: float = 0.0) -> List[ClientEvent]:
        if self._closed is not None:
            return []
        self._buf += data
        events: List[ClientEvent] = []
        if not self.authenticated and (self.check_timeout(now) is not None
                                       or not self._auth(events)):
            return events
        self._frames(events)
        return events

    def feed_raw(self, data: Union[bytes, memoryview], now: float,
                 sink: Callable[[bytes, float], None]) -> List[ClientEvent]:
        """Like ``feed`` but hands each valid record to ``sink(raw_record, now)`` undecoded.

        The records are checked exactly as ``decode_record`` checks them (a bad one is a
        ``Malformed`` event); no ``Packet``/``Response`` object is built. The returned list holds
        the other events only (usually empty). This is tcpcopy's hot path.
        """
        if self._closed is not None:
            return []
        self._buf += data
        events: List[ClientEvent] = []
        if not self.authenticated and (self.check_timeout(now) is not None
                                       or not self._auth(events)):
            return events
        buf = self._buf
        pos, n = 0, len(buf)
        want = self._want
        while True:
            if want is None:
                if n - pos < 2:
                    break
                count = (buf[pos] << 8) | buf[pos + 1]
                pos += 2
                if count == 0:
                    events.append(Malformed("empty frame"))
                    continue
                if count > COMB_MAX:
                    self._want = None
                    events.append(self._close(f"frame count {count} > {COMB_MAX}"))
                    return events
                want = count * RECORD_SIZE
            if n - pos < RECORD_SIZE:
                break
            end = pos + RECORD_SIZE
            rec = bytes(buf[pos:end])
            pos = end
            want -= RECORD_SIZE
            if want == 0:
                want = None
            b0 = rec[0]
            if b0 >> 4 != 4 or rec[9] != IPPROTO_TCP:
                events.append(Malformed("record is not an IPv4/TCP header"))
            elif rec[32] < 0x50 or b0 & 0xF < 5:
                events.append(Malformed("record has a bad IHL or DOFF"))
            else:
                sink(rec, now)
        self._want = want
        del buf[:pos]
        return events

    def _auth(self, events: List[ClientEvent]) -> bool:
        buf, key = self._buf, self._key
        assert key is not None
        if not self._server_nonce:
            if bytes(buf[:4]) != CHALLENGE_MAGIC[:min(4, len(buf))]:
                events.append(self._close("intercept sent no challenge", auth_failed=True))
                return False
            if len(buf) < CHALLENGE_SIZE:
                return False
            self._server_nonce = bytes(buf[4:CHALLENGE_SIZE])
            del buf[:CHALLENGE_SIZE]
            self._out += RESPONSE_MAGIC + self._nonce + _mac(
                key, _CLIENT_LABEL, self._server_nonce, self._nonce)
        if len(buf) < PROOF_SIZE:
            if bytes(buf[:4]) != PROOF_MAGIC[:min(4, len(buf))]:
                events.append(self._close("intercept sent no proof", auth_failed=True))
            return False
        want = PROOF_MAGIC + _mac(key, _SERVER_LABEL, self._server_nonce, self._nonce)
        if not hmac.compare_digest(bytes(buf[:PROOF_SIZE]), want):
            events.append(self._close("intercept proof is wrong", auth_failed=True))
            return False
        del buf[:PROOF_SIZE]
        self.authenticated, self.deadline = True, None
        self._out += self._hello + self._pending
        self._pending.clear()
        events.append(Authenticated())
        return True

    def _frames(self, events: List[ClientEvent]) -> None:
        buf = self._buf
        pos, n = 0, len(buf)
        while True:
            if self._want is None:
                if n - pos < 2:
                    break
                count = (buf[pos] << 8) | buf[pos + 1]
                pos += 2
                if count == 0:
                    events.append(Malformed("empty frame"))
                    continue
                if count > COMB_MAX:
                    events.append(self._close(f"frame count {count} > {COMB_MAX}"))
                    return
                self._want = count * RECORD_SIZE
            if n - pos < RECORD_SIZE:
                break
            rec = bytes(buf[pos:pos + RECORD_SIZE])
            pos += RECORD_SIZE
            self._want -= RECORD_SIZE
            if self._want == 0:
                self._want = None
            try:
                events.append(Response(decode_record(rec), rec))
            except ProtocolError as exc:
                events.append(Malformed(str(exc)))
        del buf[:pos]
