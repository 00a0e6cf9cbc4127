"""The neighbour (ARP) table from iproute2's JSON output: `ip -4 -j neigh show`.

Only entries with a link-layer address are kept; FAILED and INCOMPLETE entries (no answer to
ARP) are dropped, so a lookup that finds nothing means "no usable MAC known".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from labctl.facts.base import Fact, FactParseError
from labctl.facts.routes import json_items
from labctl.transport.base import Result

#: States in which the kernel has no usable link-layer address for the neighbour.
_UNUSABLE = {"FAILED", "INCOMPLETE"}


@dataclass(frozen=True)
class Neighbour:
    dst: ipaddress.IPv4Address
    dev: str
    mac: str
    state: tuple[str, ...] = ()


def parse_neighbours(result: Result) -> tuple[Neighbour, ...]:
    out = []
    for d in json_items(result):
        state = tuple(str(s) for s in d.get("state", []))
        if "lladdr" not in d or _UNUSABLE & set(state):
            continue
        try:
            out.append(Neighbour(ipaddress.IPv4Address(d["dst"]), str(d.get("dev", "")),
                                 str(d["lladdr"]).lower(), state))
        except (KeyError, ValueError) as exc:
            raise FactParseError(f"neighbour {d!r}: {exc}") from None
    return tuple(out)


def neighbour_mac(neighbours: tuple[Neighbour, ...], addr: ipaddress.IPv4Address,
                  dev: str) -> Optional[str]:
    """The MAC of `addr` seen on `dev`, or None."""
    for n in neighbours:
        if n.dst == addr and n.dev == dev:
            return n.mac
    return None


NEIGH = Fact("neighbours", ("ip", "-4", "-j", "neigh", "show"), parse_neighbours)
