"""The fake client pool (`clients.pool`, tcpcopy `-c`): its entries (`a.b.c.x` ranges or
addresses) as networks, their size, and each online host's disjoint share of them (pure)."""

from __future__ import annotations

import ipaddress
import re

Net = ipaddress.IPv4Network
_POOL_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(x|\d{1,3})$")


def pool_network(entry: str) -> Net:
    """`a.b.c.x` -> a.b.c.0/24; a plain address -> /32. Raises ValueError on anything else."""
    m = _POOL_RE.match(entry)
    if not m:
        raise ValueError(f"{entry!r} is not an address or an a.b.c.x range")
    octets = [int(o) for o in m.groups()[:3]]
    if any(o > 255 for o in octets):
        raise ValueError(f"{entry!r}: octets must be 0-255")
    if m.group(4) == "x":
        return ipaddress.IPv4Network(".".join(map(str, octets)) + ".0/24")
    return ipaddress.IPv4Network(str(ipaddress.IPv4Address(entry)) + "/32")


MAX_POOL_PER_HOST = 4096      # tcpcopy -c takes at most this many addresses


def split_pool(entries: list[str], hosts: int, index: int) -> list[str]:
    """Share `i` of `hosts` disjoint shares of a `-c` pool (pure). Whole entries (a.b.c.x
    ranges, addresses) round-robin when there are enough of them, else addresses one by one."""
    if hosts <= 1:
        return list(entries)
    if len(entries) >= hosts:
        return list(entries[index::hosts])
    addrs = [str(a) for net in map(pool_network, entries)
             for a in (net.hosts() if net.prefixlen < 31 else [net.network_address])]
    return addrs[index::hosts][:MAX_POOL_PER_HOST]


def pool_size(entries: list[str]) -> int:
    """How many fake addresses the entries give (an a.b.c.x range: .1-.254)."""
    nets = [pool_network(e) for e in entries]
    return sum(n.num_addresses - 2 if n.prefixlen < 31 else 1 for n in nets)
