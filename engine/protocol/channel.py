"""The two ends of the tcpcopy <-> intercept channel, sans-I/O (bytes in, events out).

``ServerChannel`` (intercept's side of one accepted tcpcopy) and ``ClientChannel`` (tcpcopy's
side of one intercept connection) share ``_Channel``: buffering, pending output, the auth
deadline and closing. The wire format is ``engine.protocol.wire``.
"""

from __future__ import annotations

import os
from _operator import _compare_digest as same_digest  # hmac.compare_digest, without hmac
from typing import Any, Callable, List, Optional, Tuple, Union

from engine import INTERNAL_VERSION
from engine.protocol.wire import (
    AUTH_TIMEOUT,
    CHALLENGE_MAGIC,
    CHALLENGE_SIZE,
    CLIENT_ADD,
    CLIENT_DEL,
    COMB_MAX,
    MAX_MALFORMED_RUN,
    MSG,
    MSG_SIZE,
    NONCE_SIZE,
    PROOF_MAGIC,
    PROOF_SIZE,
    RECORD_SIZE,
    RESPONSE_MAGIC,
    RESPONSE_SIZE,
    Authenticated,
    ClientEvent,
    Closed,
    Hello,
    Malformed,
    ProtocolError,
    Registration,
    Response,
    ServerEvent,
    client_mac,
    decode_record,
    encode_hello,
    encode_message,
    server_mac,
)

RecordSink = Callable[[List[bytes], float], None]   # (the 64-byte records of one read, now)


# ---------------------------------------------------------------- shared channel state


class _Channel:
    """What both ends share: input buffer, pending output, the auth deadline, closing.

    Subclasses set ``TIMEOUT_REASON`` and implement ``_auth(events) -> bool`` (consume the
    handshake bytes at the front of ``_buf``; True once authenticated)."""

    TIMEOUT_REASON = "authentication timeout"

    def __init__(self, key: Optional[bytes]) -> None:
        self._key = key
        self._buf = bytearray()
        self._out = bytearray()
        self._closed: Optional[Closed] = None
        self.deadline: Optional[float] = None
        self.authenticated = key is None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def take_output(self) -> bytes:
        if not self._out:
            return b""              # the usual case on a read: no new allocation
        out, self._out = bytes(self._out), bytearray()
        return out

    def check_timeout(self, now: float) -> Optional[Closed]:
        if self._closed is None and not self.authenticated and self.deadline is not None \
                and now >= self.deadline:
            return self._close(self.TIMEOUT_REASON, auth_failed=True)
        return None

    def _close(self, reason: str, auth_failed: bool = False) -> Closed:
        self._closed = Closed(reason, auth_failed)
        self._buf.clear()
        return self._closed

    def _take_input(self, data: Union[bytes, memoryview], now: float, events: List[Any]) -> bool:
        """Buffer ``data``; True when the channel is open and authenticated (the buffer then
        starts with channel messages/frames), False when the caller has nothing more to do."""
        if self._closed is not None:
            return False
        self._buf += data
        if self.authenticated:
            return True
        late = self.check_timeout(now)
        if late is not None:            # bytes after the deadline: the caller must close it
            events.append(late)
            return False
        return self._auth(events)

    def _auth(self, events: List[Any]) -> bool:
        raise NotImplementedError


# ---------------------------------------------------------------- server (intercept) side


class ServerChannel(_Channel):
    """One accepted tcpcopy connection. feed() bytes in, events out; take_output() bytes out."""

    def __init__(self, key: Optional[bytes], now: float, nonce: Optional[bytes] = None) -> None:
        super().__init__(key)
        self._seen_hello = False
        self._bad_run = 0
        self.version: Optional[int] = None
        self._nonce = b""
        if key is not None:
            self._nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
            self._out += CHALLENGE_MAGIC + self._nonce
            self.deadline = now + AUTH_TIMEOUT

    @property
    def ready(self) -> bool:
        """Authenticated and hello seen: records may be sent to this peer."""
        return self.authenticated and self._seen_hello and self._closed is None

    def feed(self, data: bytes, now: float = 0.0) -> List[ServerEvent]:
        events: List[ServerEvent] = []
        if not self._take_input(data, now, events):
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
        if not same_digest(mac, client_mac(self._key, self._nonce, nonce_c)):
            events.append(self._close("bad authentication code", auth_failed=True))
            return False
        del buf[:RESPONSE_SIZE]
        self.authenticated, self.deadline = True, None
        self._out += PROOF_MAGIC + server_mac(self._key, self._nonce, nonce_c)
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


class ClientChannel(_Channel):
    """One tcpcopy connection to an intercept. register() queues messages (sent once
    authenticated), feed() turns frames into Response events, take_output() drains bytes."""

    TIMEOUT_REASON = "intercept did not authenticate"

    def __init__(self, key: Optional[bytes], now: float, nonce: Optional[bytes] = None,
                 version: int = INTERNAL_VERSION) -> None:
        super().__init__(key)
        self._pending = bytearray()
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_SIZE)
        self._server_nonce = b""
        self._want: Optional[int] = None   # record bytes still expected in the current frame
        self._hello = encode_hello(version)
        if key is None:
            self._out += self._hello
        else:
            self.deadline = now + AUTH_TIMEOUT * 4   # a keyless C intercept never challenges

    def register(self, client_ip: int, client_port: int, target_ip: int, target_port: int,
                 kind: int = CLIENT_ADD) -> None:
        if self._closed is not None:
            raise ProtocolError("register() on a closed channel")
        msg = encode_message(kind, client_ip, client_port, target_ip, target_port)
        (self._out if self.authenticated else self._pending).extend(msg)

    def _close(self, reason: str, auth_failed: bool = False) -> Closed:
        self._pending.clear()
        return super()._close(reason, auth_failed)

    def feed(self, data: bytes, now: float = 0.0) -> List[ClientEvent]:
        """Frames in, ``Response`` (and ``Malformed``/``Closed``/``Authenticated``) events out,
        in stream order."""
        events: List[ClientEvent] = []

        def respond(rec: bytes) -> None:
            try:
                events.append(Response(decode_record(rec), rec))
            except ProtocolError as exc:
                events.append(Malformed(str(exc)))
        if self._take_input(data, now, events):
            self._frames(respond, events)
        return events

    def feed_raw(self, data: Union[bytes, memoryview], now: float,
                 sink: RecordSink) -> List[ClientEvent]:
        """Like ``feed`` but hands the records of this read to ``sink(raw_records, now)``, in
        one call, undecoded and UNCHECKED: the receiver parses each once with
        ``engine.header.record_view`` (the rules ``decode_record`` applies; tcpcopy's engine
        counts a bad one as ``channel_malformed``) and may look at neighbours together
        (``Engine.on_response_records`` joins a response's consecutive segments). The sink
        runs before the caller sees the events, as each record did before. Framing errors are
        events as with ``feed``; the returned list holds those only (usually empty). This is
        tcpcopy's hot path.
        """
        events: List[ClientEvent] = []
        if self._take_input(data, now, events):
            recs: List[bytes] = []
            self._frames(recs.append, events)
            if recs:
                sink(recs, now)
        return events

    def _frames(self, take: Callable[[bytes], None], events: List[ClientEvent]) -> None:
        """Cut the buffered stream into frames and records; each record goes to ``take``."""
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
                    return
                want = count * RECORD_SIZE
            if n - pos < RECORD_SIZE:
                break
            end = pos + RECORD_SIZE
            take(bytes(buf[pos:end]))
            pos = end
            want -= RECORD_SIZE
            if want == 0:
                want = None
        self._want = want
        del buf[:pos]

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
            self._out += RESPONSE_MAGIC + self._nonce + client_mac(
                key, self._server_nonce, self._nonce)
        if len(buf) < PROOF_SIZE:
            if bytes(buf[:4]) != PROOF_MAGIC[:min(4, len(buf))]:
                events.append(self._close("intercept sent no proof", auth_failed=True))
            return False
        want = PROOF_MAGIC + server_mac(key, self._server_nonce, self._nonce)
        if not same_digest(bytes(buf[:PROOF_SIZE]), want):
            events.append(self._close("intercept proof is wrong", auth_failed=True))
            return False
        del buf[:PROOF_SIZE]
        self.authenticated, self.deadline = True, None
        self._out += self._hello + self._pending
        self._pending.clear()
        events.append(Authenticated())
        return True
