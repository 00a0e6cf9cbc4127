"""The troubleshooting tree's values (pure): captured packets, facts, steps, the diagnosis."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from labctl.verify.ledger import Conntrack, DaemonStats

#: Linux cooked-capture packet types: the capturing host received it / sent it.
INBOUND, OUTBOUND = "in", "out"
RST_LEAK_SECONDS = 1.0
CONNTRACK_FULL = 0.98
ROUTE_QUESTION = "the target's SYN-ACKs reach the assistant (not the client)"


@dataclass(frozen=True)
class Pkt:
    """One captured IPv4 packet: TCP flags as letters (`S`, `SA`, `R`, `FA`...), or ICMP."""

    t: float
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    flags: str = ""
    direction: str = INBOUND
    csum_ok: Optional[bool] = None
    icmp_type: Optional[int] = None
    payload: int = 0
    icmp_code: Optional[int] = None
    length: int = 0          # the IP packet's total length

    @property
    def syn(self) -> bool:
        return "S" in self.flags and "A" not in self.flags

    @property
    def synack(self) -> bool:
        return "S" in self.flags and "A" in self.flags

    @property
    def rst(self) -> bool:
        return "R" in self.flags


@dataclass(frozen=True)
class Facts:
    """What diagnose read on the hosts besides packets (None: could not be read)."""

    pool: Sequence[str]
    service_ports: Sequence[int]
    target_addresses: Sequence[str]
    assistant_address: Optional[str]
    daemons: Sequence[DaemonStats] = ()
    intercept_routed_delta: Optional[int] = None
    ip_forward: Optional[int] = None
    rp_filter: Optional[int] = None
    rp_filter_drops: Optional[int] = None
    route_via: Optional[str] = None
    conntrack: Sequence[Conntrack] = ()
    #: the target's listening sockets as (address, port); "0.0.0.0"/"*"/"::" = every address
    target_listeners: Optional[Sequence[tuple[str, int]]] = None
    #: TcpExtListenOverflows on the target, increase during the capture
    listen_overflows: Optional[int] = None
    #: the MTU of the target's link towards online (where the copies come in)
    target_mtu: Optional[int] = None


@dataclass(frozen=True)
class Captures:
    """Packets per role (all online hosts merged). None: that capture failed or is missing."""

    online: Optional[Sequence[Pkt]]
    target: Optional[Sequence[Pkt]]
    assistant: Optional[Sequence[Pkt]]


@dataclass(frozen=True)
class Step:
    question: str
    status: str  # ok | broken | skipped
    evidence: str
    fix: str = ""


@dataclass
class Diagnosis:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def broken(self) -> Optional[Step]:
        return next((s for s in self.steps if s.status == "broken"), None)


class Net:
    def __init__(self, facts: Facts) -> None:
        self.pool = [ipaddress.ip_network(n, strict=False) for n in facts.pool]
        self.ports = set(facts.service_ports)
        self.targets = set(facts.target_addresses)

    def in_pool(self, addr: str) -> bool:
        ip = ipaddress.ip_address(addr)
        return any(ip in n for n in self.pool)

    def copy(self, p: Pkt) -> bool:
        """A copied packet: from the pool to a target service port."""
        return p.dst in self.targets and p.dport in self.ports and self.in_pool(p.src)

    def answer(self, p: Pkt) -> bool:
        """The target answering a copy: from a target service port to the pool."""
        return p.src in self.targets and p.sport in self.ports and self.in_pool(p.dst)


def count(pkts: Sequence[Pkt], pred: Callable[[Pkt], bool]) -> int:
    return sum(1 for p in pkts if pred(p))


Check = Callable[[Captures, Facts, Net], Step]
