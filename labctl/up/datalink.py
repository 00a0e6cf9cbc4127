"""Next hops for `engine.datalink` (tcpcopy `-o DEV` with `-x …:PORT@MAC`), from facts (pure).

For each target address, online's `ip route get` gives the egress device and the gateway. The
next-hop MAC is the target's own interface MAC (`ip -j addr` on the host holding the address)
when the target is on-link for online, else the gateway's entry in online's neighbour table.

    res = resolve_next_hops(inv, online_spec, facts)
    res.hops   -> NextHops(device="eth0", macs={"10.77.1.20": "46:7e:…"})  or None
    res.problems -> (Problem(message, hint), …)   # why a MAC or the device is unknown
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from labctl.facts import HostFacts
from labctl.facts.neigh import neighbour_mac
from labctl.facts.routes import interface_with
from labctl.inventory.models import HostSpec, Inventory

IPv4 = ipaddress.IPv4Address
FALLBACK = "or set engine.datalink: false"


@dataclass(frozen=True)
class NextHops:
    """tcpcopy's `-o` device and the next-hop MAC of every target address (str -> MAC)."""

    device: str
    macs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    message: str
    hint: str


@dataclass(frozen=True)
class Resolution:
    hops: Optional[NextHops] = None
    problems: tuple[Problem, ...] = ()


def _own_mac(addr: IPv4, facts: Mapping[str, HostFacts]) -> Optional[str]:
    """The MAC of the interface holding `addr` on any inventory host whose addresses we know."""
    for hf in facts.values():
        itf = interface_with(hf.interfaces, addr) if hf.interfaces else None
        if itf is not None and itf.mac:
            return itf.mac
    return None


def _next_hop(addr: IPv4, hf: HostFacts, facts: Mapping[str, HostFacts]
              ) -> tuple[Optional[str], Optional[str], Optional[Problem]]:
    """(device, mac, problem) for one target address as seen from online host `hf`."""
    rg = hf.route_gets.get(str(addr))
    if rg is None:
        why = hf.unknown.get(f"route_get:{addr}", "not gathered")
        return None, None, Problem(f"route to the target {addr} unknown: {why}",
                                   f"check `ip route get {addr}` works on {hf.host}, {FALLBACK}")
    if not rg.reachable or not rg.dev:
        return None, None, Problem(f"no route to the target {addr}",
                                   f"add a route to {addr} on {hf.host}, {FALLBACK}")
    hop = rg.gateway or addr
    neigh = neighbour_mac(hf.neighbours, hop, rg.dev) if hf.neighbours else None
    mac = (_own_mac(addr, facts) if rg.on_link else None) or neigh
    if mac is None:
        what = f"the target {addr}" if rg.on_link else f"the gateway {hop} (route to {addr})"
        return rg.dev, None, Problem(
            f"next-hop MAC of {what} on {rg.dev} unknown: not in the neighbour table"
            + ("" if hf.neighbours is not None else
               f" ({hf.unknown.get('neighbours', 'not gathered')})"),
            f"ping {hop} once from {hf.host} so it is in the neighbour table, {FALLBACK}")
    return rg.dev, mac, None


def resolve_next_hops(inv: Inventory, online: HostSpec,
                      facts: Mapping[str, HostFacts]) -> Resolution:
    """The `-o` device and `@MAC`s for one online host, or the problems in the way."""
    hf = facts.get(online.name)
    if hf is None or hf.unreachable:
        return Resolution(problems=(Problem("no facts for this online host",
                                            "fix SSH access to it"),))
    devices: set[str] = set()
    macs: dict[str, str] = {}
    problems: list[Problem] = []
    for addr in inv.target_addresses():
        dev, mac, problem = _next_hop(addr, hf, facts)
        if problem is not None:
            problems.append(problem)
        if dev:
            devices.add(dev)
        if mac:
            macs[str(addr)] = mac
    if len(devices) > 1:
        problems.append(Problem(
            f"the targets leave by different interfaces ({', '.join(sorted(devices))}); "
            "tcpcopy -o takes one", f"copy to targets behind one interface, {FALLBACK}"))
    if problems:
        return Resolution(problems=tuple(problems))
    return Resolution(NextHops(devices.pop(), macs))
