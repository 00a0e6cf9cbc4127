"""The one error the packet parsers raise (its own module so option and header parsers share it)."""

from __future__ import annotations


class PacketError(ValueError):
    """A buffer is not a well-formed IPv4/TCP packet. ``reason`` is a short counter-friendly key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
