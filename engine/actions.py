"""What the session core asks the I/O layer to do: small typed, immutable values (pure).

The engine's event methods (``engine.session.table.Engine.on_*``, ``flush``, ``shutdown`` …)
return a list of these, in the order they must happen; the daemon dispatches on the type:

- ``SendPacket(session, route, packet)``: put an IPv4 packet (checksums filled) on the wire
  towards the target of ``-x`` route number ``route``; ``session`` is the sending session's
  key (fake ip << 16 | fake port), to report a send error back (``Engine.on_send_error``).
- ``RegisterRoute(fake_ip, fake_port, target_ip, target_port, forget=False)``: tell every
  intercept to route the target's responses to this fake client back to us (a ``CLIENT_ADD``
  message), or, with ``forget``, that the session is gone for good and its route can go (a
  ``CLIENT_DEL``: intercept's route table stays the size of the live sessions; the C intercept
  ignores it).
- ``Drop(reason)``: an input was dropped (only with ``SessionConfig.record_drops``; the
  counters always count it). ``reason`` is a counter name.

Timers are not actions: the engine keeps one heap for all sessions and the daemon asks
``Engine.next_deadline()`` once per batch of events (like aioquic's ``get_timer()``); an
action per armed timer would cost an object per packet for what one float answers.

They are named tuples (immutable, no per-instance dict, built at C speed; ``dataclass(slots=)``
needs Python 3.10) whose equality also compares the type, so ``Drop("x") != ("x",)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union


def _eq(self: tuple, other: Any) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _ne(self: tuple, other: Any) -> bool:
    return not _eq(self, other)


def _hash(self: tuple) -> int:
    return hash((type(self).__name__, tuple(self)))


class SendPacket(NamedTuple):
    session: int
    route: int
    packet: bytes

    def __repr__(self) -> str:      # never the payload bytes (logs, test failures)
        return f"SendPacket(session={self.session:#x}, route={self.route}, {len(self.packet)}B)"


class RegisterRoute(NamedTuple):
    fake_ip: int
    fake_port: int
    target_ip: int
    target_port: int
    forget: bool = False


class Drop(NamedTuple):
    reason: str


Action = Union[SendPacket, RegisterRoute, Drop]

for _cls in (SendPacket, RegisterRoute, Drop):     # typed equality (see above)
    setattr(_cls, "__eq__", _eq)   # noqa: B010  (mypy refuses dunder fields in NamedTuple)
    setattr(_cls, "__ne__", _ne)   # noqa: B010
    setattr(_cls, "__hash__", _hash)   # noqa: B010

__all__ = ["Action", "Drop", "RegisterRoute", "SendPacket"]
