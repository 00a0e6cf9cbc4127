"""Listening TCP sockets (`ss -Hltn`) and TCP reachability probes (argv-only, via python3)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from labctl.facts.base import NOT_FOUND, Fact, FactParseError, require_ok
from labctl.transport.base import Result

#: Connects to argv[1]:argv[2] with timeout argv[3]; exit 0 when the TCP handshake completes.
TCP_PROBE = (
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()\n"
    "except OSError as e:\n"
    "    sys.stderr.write(str(e)); sys.exit(1)\n"
)


@dataclass(frozen=True)
class Listener:
    address: str  # "0.0.0.0", "::", "*", or an address
    port: int

    def covers(self, address: Optional[ipaddress.IPv4Address]) -> bool:
        """Does this socket accept connections to `address` (None = any address)?"""
        if self.address in ("0.0.0.0", "*", "::", "[::]"):
            return True
        return address is not None and self.address == str(address)


def _split_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise FactParseError(f"bad local address {text!r}")
    host = host.split("%")[0].strip("[]")
    return host or "*", int(port)


def parse_listeners(result: Result) -> tuple[Listener, ...]:
    out = []
    for line in require_ok(result).splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 5:
            raise FactParseError(f"unexpected ss line {line!r}")
        out.append(Listener(*_split_endpoint(parts[3])))
    return tuple(out)


def parse_probe(result: Result) -> bool:
    if result.exit_code == NOT_FOUND:
        raise FactParseError("python3 not found (needed for the TCP probe)")
    return result.ok


def tcp_probe_fact(address: ipaddress.IPv4Address, port: int, timeout: float = 3.0) -> Fact[bool]:
    return Fact(f"tcp:{address}:{port}",
                ("python3", "-c", TCP_PROBE, str(address), str(port), f"{timeout:g}"),
                parse_probe, timeout=timeout + 10)


LISTENERS = Fact("listeners", ("ss", "-Hltn"), parse_listeners)
