"""The tcpcopy <-> intercept channel, sans-I/O and byte-exact with the C tools (study §2).

Modules: ``wire`` (formats, events, codecs, MACs) and ``channel`` (the two ends); everything
is re-exported here, so ``engine.protocol.X`` is the public name.

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

from engine.protocol.channel import ClientChannel, RecordSink, ServerChannel
from engine.protocol.wire import (
    AUTH_TIMEOUT,
    CHALLENGE_MAGIC,
    CHALLENGE_SIZE,
    CLIENT_ADD,
    CLIENT_DEL,
    COMB_MAX,
    DEFAULT_PORT,
    MAC_SIZE,
    MAX_MALFORMED_RUN,
    MIN_KEY_BYTES,
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
    encode_frame,
    encode_hello,
    encode_message,
    load_key,
    make_record,
    record_from_packet,
    record_problem,
    server_mac,
)

__all__ = [
    "AUTH_TIMEOUT", "CHALLENGE_MAGIC", "CHALLENGE_SIZE", "CLIENT_ADD", "CLIENT_DEL", "COMB_MAX",
    "DEFAULT_PORT", "MAC_SIZE", "MAX_MALFORMED_RUN", "MIN_KEY_BYTES", "MSG", "MSG_SIZE",
    "NONCE_SIZE", "PROOF_MAGIC", "PROOF_SIZE", "RECORD_SIZE", "RESPONSE_MAGIC", "RESPONSE_SIZE",
    "Authenticated", "ClientChannel", "ClientEvent", "Closed", "Hello", "Malformed",
    "ProtocolError", "RecordSink",
    "Registration", "Response", "ServerChannel", "ServerEvent", "client_mac",
    "decode_record", "encode_frame", "encode_hello", "encode_message", "load_key", "make_record",
    "record_from_packet", "record_problem", "server_mac",
]
