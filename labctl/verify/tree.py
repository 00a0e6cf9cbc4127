"""The troubleshooting tree of a copy lab (pure): captures and facts in, the first broken link out.

It walks the path a copied session takes, in order, the way tcpcopy users do by hand (study §5.3,
§7): daemons up -> conntrack headroom -> client traffic at online -> copies leave online ->
copies reach the target -> something listens on the copied ports -> the target answers (else:
rp_filter, bad checksums, a silent firewall) -> it accepts rather than resets (RST to the SYNs:
nothing listens, or a REJECT) -> its accept queue keeps up (SYN-ACKs repeated, ListenOverflows)
-> the path fits the copied segments (ICMP "fragmentation needed") -> answers reach the
assistant (else: the target's route is missing) -> the assistant black-holes them
(ip_forward=0) -> intercept passes them to tcpcopy -> no RST right after a SYN-ACK (a leak to
a real client). The first step that fails is the broken link, with its fix.

Packets are small values (`Pkt`) made from the captures by `labctl.verify.diagnose`
(scapy lives there).
"""

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


class _Net:
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


def _count(pkts: Sequence[Pkt], pred: Callable[[Pkt], bool]) -> int:
    return sum(1 for p in pkts if pred(p))


Check = Callable[[Captures, Facts, _Net], Step]


def check_daemons(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the engine daemons run (tcpcopy on online, intercept on the assistant)"
    if not f.daemons:
        return Step(q, "skipped", "no daemon records (was `labctl up` run?)")
    down = [d for d in f.daemons if d.state != "running"]
    tools = {d.tool for d in f.daemons}
    missing = {"tcpcopy", "intercept"} - tools
    if down or missing:
        what = [f"{d.tool} on {d.host}: {d.state} {d.detail}".strip() for d in down]
        what += [f"{m}: not started" for m in sorted(missing)]
        return Step(q, "broken", "; ".join(what),
                    "start it again: `labctl down` then `labctl up`; its log is next to its "
                    "stats file in the host's state directory")
    return Step(q, "ok", ", ".join(f"{d.tool}@{d.host}" for d in f.daemons))


def check_conntrack(c: Captures, f: Facts, n: _Net) -> Step:
    q = "conntrack has room on online and target"
    full = [ct for ct in f.conntrack if ct.used_pct is not None and
            ct.used_pct >= 100 * CONNTRACK_FULL]
    if full:
        return Step(q, "broken", ", ".join(f"{ct.host} {ct.count}/{ct.max}" for ct in full),
                    "raise net.netfilter.nf_conntrack_max, or set conntrack.notrack: true in the "
                    "inventory (NOTRACK rules for the copied port in a LABCTL chain)")
    known = [ct for ct in f.conntrack if ct.used_pct is not None]
    if not known:
        return Step(q, "skipped", "conntrack not loaded or not readable")
    return Step(q, "ok", ", ".join(f"{ct.host} {ct.used_pct:.0f} %" for ct in known))


def check_client_traffic(c: Captures, f: Facts, n: _Net) -> Step:
    q = "client traffic reaches online during the capture"
    if c.online is None:
        return Step(q, "skipped", "no capture from online")
    got = _count(c.online, lambda p: p.direction == INBOUND and p.dport in n.ports
                 and not n.in_pool(p.src))
    if not got:
        return Step(q, "broken", "no client packets to the service port(s) "
                    f"{sorted(n.ports)} on online in the capture",
                    "nothing to copy: send traffic to online while diagnose runs, or check "
                    "services[].port in the inventory")
    return Step(q, "ok", f"{got} client packets")


def check_copies_leave(c: Captures, f: Facts, n: _Net) -> Step:
    q = "tcpcopy sends copies from online"
    if c.online is None:
        return Step(q, "skipped", "no capture from online")
    got = _count(c.online, lambda p: p.direction == OUTBOUND and n.copy(p))
    if not got:
        return Step(q, "broken", "online sent no packets from the client pool to the target",
                    "tcpcopy captures nothing: check its `captured` counter and log; if it is "
                    "0, capture on the right interface (datalink capture, -i) and filter")
    return Step(q, "ok", f"{got} copied packets left online")


def check_copies_arrive(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the copied SYNs reach the target"
    if c.target is None:
        return Step(q, "skipped", "no capture from the target")
    syns = _count(c.target, lambda p: p.direction == INBOUND and n.copy(p) and p.syn)
    any_copy = _count(c.target, lambda p: p.direction == INBOUND and n.copy(p))
    if not any_copy:
        return Step(q, "broken", "no packet from the client pool reached the target",
                    "something between online and target drops forged sources: anti-spoofing, "
                    "security groups or a firewall; keep them on one L2 segment")
    return Step(q, "ok", f"{syns} SYNs, {any_copy} copied packets arrived")


def check_target_answers(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the target answers the copies (SYN-ACKs)"
    if c.target is None:
        return Step(q, "skipped", "no capture from the target")
    answers = _count(c.target, lambda p: p.direction == OUTBOUND and n.answer(p))
    if answers:
        return Step(q, "ok", f"{answers} packets answered")
    if f.assistant_address and f.route_via != f.assistant_address:
        return _route_broken(f, "the target sends nothing back: it has no route for the pool "
                             f"via the assistant (route get: via {f.route_via or 'none'})")
    if f.rp_filter_drops or f.rp_filter == 1:
        return Step(q, "broken", f"rp_filter={f.rp_filter}, TcpExtIPReversePathFilter "
                    f"+{f.rp_filter_drops or 0} during the capture",
                    "sysctl -w net.ipv4.conf.all.rp_filter=0 (and on the interface) on the "
                    "target, or 2 (loose)")
    bad = _count(c.target, lambda p: p.direction == INBOUND and n.copy(p) and
                 p.csum_ok is False)
    if bad:
        return Step(q, "broken", f"{bad} copied packets arrived with bad TCP checksums",
                    "checksum offload mangles the copies: `ethtool -K IFACE tx off` on online, "
                    "or let the engine compute checksums")
    return Step(q, "broken", "copies arrive but the target sends nothing back",
                "is the service listening on the target port? is a firewall on the target "
                "dropping the pool addresses?")


WILDCARDS = ("0.0.0.0", "*", "::", "[::]")
BACKLOG_SHARE = 0.05       # SYN-ACKs repeated for more than this share of the copied SYNs
ICMP_UNREACH, FRAG_NEEDED = 3, 4


def check_target_listens(c: Captures, f: Facts, n: _Net) -> Step:
    q = "something listens on the copied ports of the target"
    if f.target_listeners is None:
        return Step(q, "skipped", "the target's socket table could not be read (ss -Hltn)")
    missing = [f"{a}:{p}" for a in f.target_addresses for p in f.service_ports
               if not any(lp == p and (la in WILDCARDS or la == a)
                          for la, lp in f.target_listeners)]
    wanted = len(f.target_addresses) * len(f.service_ports)
    if missing and len(missing) == wanted:
        return Step(q, "broken", "nothing listens on " + ", ".join(missing[:4])
                    + " (the target's ss -ltn): it refuses every copy with a RST",
                    "start the service under test on the target, or fix services[].target_port")
    if missing:
        return Step(q, "ok", "listening; not on " + ", ".join(missing[:4])
                    + " (a port only the other side of a mapping uses?)")
    return Step(q, "ok", f"listening on {wanted} copied address:port pair(s)")


def _refusals(pkts: Sequence[Pkt], n: _Net) -> tuple[int, int]:
    """(RSTs the target sent to copied connections, SYN-ACKs it sent)."""
    rsts = _count(pkts, lambda p: p.direction == OUTBOUND and n.answer(p) and p.rst)
    synacks = _count(pkts, lambda p: p.direction == OUTBOUND and n.answer(p) and p.synack)
    return rsts, synacks


def check_target_accepts(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the target accepts the copies (SYN-ACK, not RST)"
    if c.target is None:
        return Step(q, "skipped", "no capture from the target")
    rsts, synacks = _refusals(c.target, n)
    if rsts and not synacks:
        ports = sorted({p.sport for p in c.target
                        if p.direction == OUTBOUND and n.answer(p) and p.rst})
        where = ", ".join(f"{a}:{p}" for a in f.target_addresses for p in ports[:3])
        return Step(q, "broken", f"the target refused the copies: {rsts} RSTs and no SYN-ACK "
                    f"from {where}",
                    "nothing listens there (start the service, check services[].target_port) "
                    "or a firewall REJECTs the client pool on the target")
    return Step(q, "ok", f"{synacks} SYN-ACKs, {rsts} RSTs")


def check_target_backlog(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the target's accept queue keeps up (no SYN-ACK repeated, no listen overflow)"
    if c.target is None and f.listen_overflows is None:
        return Step(q, "skipped", "no capture from the target")
    seen: set[tuple[str, int, str, int]] = set()
    repeated = 0
    for p in c.target or ():
        if p.direction == OUTBOUND and p.synack and n.answer(p):
            key = (p.src, p.sport, p.dst, p.dport)
            if key in seen:
                repeated += 1
            seen.add(key)
    over = f.listen_overflows or 0
    if over > 0 or (seen and repeated > BACKLOG_SHARE * len(seen)):
        return Step(q, "broken", f"TcpExtListenOverflows +{over}, {repeated} SYN-ACKs repeated "
                    f"for {len(seen)} copied connections: the service does not accept fast "
                    "enough (its listen backlog is full)",
                    "raise the service's backlog (nginx: listen ... backlog=N; "
                    "net.core.somaxconn), give it more workers, or copy less (-r, --safe)")
    return Step(q, "ok", f"{repeated} SYN-ACKs repeated, ListenOverflows +{over}")


def check_path_mtu(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the copied packets fit the path to the target (MTU)"
    if c.online is None and c.target is None:
        return Step(q, "skipped", "no capture")
    copies = [p.length for p in c.online or () if p.direction == OUTBOUND and n.copy(p)]
    biggest = max(copies, default=0)
    if f.target_mtu and biggest > f.target_mtu:
        return Step(q, "broken", f"copies of up to {biggest} bytes leave online but the "
                    f"target's link MTU is {f.target_mtu}: the larger ones never arrive (the C "
                    "tool's 'Message too long' class)",
                    f"give tcpcopy the path's MTU (tcpcopy -M {f.target_mtu}), or raise the "
                    "MTU of the target's link")
    pkts = [*(c.online or ()), *(c.target or ())]
    need = [p for p in pkts if p.icmp_type == ICMP_UNREACH and p.icmp_code == FRAG_NEEDED]
    if need:
        return Step(q, "broken", f"{len(need)} ICMP 'fragmentation needed' from "
                    + ", ".join(sorted({p.src for p in need})[:3])
                    + ": copied segments are larger than the path MTU (the C tool's 'Message "
                    "too long')",
                    "give tcpcopy the path's MTU (tcpcopy -M MTU), or raise the MTU of the "
                    "link to the target")
    mtu = f"target MTU {f.target_mtu}" if f.target_mtu else "target MTU unknown"
    return Step(q, "ok", f"largest copy {biggest} bytes, {mtu}, no 'fragmentation needed'")


def check_answers_reach_assistant(c: Captures, f: Facts, n: _Net) -> Step:
    q = ROUTE_QUESTION
    if c.assistant is None:
        return Step(q, "skipped", "no capture from the assistant (two-server topology?)")
    got = _count(c.assistant, lambda p: p.direction == INBOUND and n.answer(p))
    if got:
        return Step(q, "ok", f"{got} answers seen on the assistant")
    via = f.route_via or "its default gateway"
    return _route_broken(f, f"no answer reached the assistant; the target routes the pool "
                         f"via {via}")


def _route_broken(f: Facts, evidence: str) -> Step:
    return Step(ROUTE_QUESTION, "broken", evidence,
                f"on the target: ip route replace {' '.join(f.pool[:1]) or 'POOL'} via "
                f"{f.assistant_address or 'ASSISTANT'} (labctl up adds it; was it removed?)")


def check_blackhole(c: Captures, f: Facts, n: _Net) -> Step:
    q = "the assistant black-holes the answers (ip_forward=0)"
    if c.assistant is None and f.ip_forward is None:
        return Step(q, "skipped", "no assistant")
    forwarded = _count(c.assistant or (), lambda p: p.direction == OUTBOUND and n.answer(p))
    redirects = _count(c.assistant or (), lambda p: p.icmp_type == 5)
    if f.ip_forward == 1 or forwarded:
        return Step(q, "broken", f"ip_forward={f.ip_forward}; {forwarded} answers forwarded on, "
                    f"{redirects} ICMP redirects: replies leak toward the clients",
                    "on the assistant: sysctl -w net.ipv4.ip_forward=0")
    return Step(q, "ok", f"ip_forward={f.ip_forward}, nothing forwarded")


def check_intercept(c: Captures, f: Facts, n: _Net) -> Step:
    q = "intercept passes the answers back to tcpcopy"
    if f.intercept_routed_delta is None:
        return Step(q, "skipped", "no intercept counters")
    if f.intercept_routed_delta <= 0:
        return Step(q, "broken", "intercept routed no response during the capture",
                    "check intercept's filter (-F / -i) and that tcpcopy is connected to it "
                    "(`labctl status`); restart with `labctl down` + `labctl up`")
    return Step(q, "ok", f"intercept routed {f.intercept_routed_delta} responses")


def check_rst_leak(c: Captures, f: Facts, n: _Net) -> Step:
    q = "no RST follows a SYN-ACK within a second (a response leaking to a real client)"
    if c.target is None:
        return Step(q, "skipped", "no capture from the target")
    leaks = rst_after_synack(c.target, n)
    if leaks:
        return Step(q, "broken", f"{leaks} sessions reset by the client side right after the "
                    "target's SYN-ACK: the answers reach a real host",
                    "route the client pool on the target via the assistant, and use a -c pool "
                    "of addresses no real host owns")
    return Step(q, "ok", "no early resets")


def rst_after_synack(pkts: Sequence[Pkt], n: _Net) -> int:
    """Sessions whose first client packet after the target's SYN-ACK is a RST within 1 s."""
    synack_at: dict[tuple[str, int, str, int], float] = {}
    leaks = 0
    for p in sorted(pkts, key=lambda x: x.t):
        if p.synack and n.answer(p):
            synack_at.setdefault((p.dst, p.dport, p.src, p.sport), p.t)
        elif n.copy(p) and p.direction == INBOUND:
            t0 = synack_at.pop((p.src, p.sport, p.dst, p.dport), None)
            if t0 is not None and p.rst and p.t - t0 <= RST_LEAK_SECONDS:
                leaks += 1
    return leaks


TREE: tuple[Check, ...] = (
    check_daemons, check_conntrack, check_client_traffic, check_copies_leave,
    check_copies_arrive, check_target_listens, check_target_answers, check_target_accepts,
    check_target_backlog, check_path_mtu, check_answers_reach_assistant,
    check_blackhole, check_intercept, check_rst_leak,
)


def walk(captures: Captures, facts: Facts) -> Diagnosis:
    """Run the checks in path order; after the first broken link the rest are skipped."""
    net = _Net(facts)
    out = Diagnosis()
    for check in TREE:
        if out.broken is not None:
            step = check(captures, facts, net)
            out.steps.append(Step(step.question, "skipped", "after the first broken link"))
            continue
        out.steps.append(check(captures, facts, net))
    return out
