"""The target's own links (pure): something listens on the copied ports, it accepts rather
than resets, its accept queue keeps up, the copies fit its link (MTU)."""

from __future__ import annotations

from collections.abc import Sequence

from labctl.verify.tree.model import (
    OUTBOUND,
    Captures,
    Facts,
    Net,
    Pkt,
    Step,
    count,
)

WILDCARDS = ("0.0.0.0", "*", "::", "[::]")
BACKLOG_SHARE = 0.05       # SYN-ACKs repeated for more than this share of the copied SYNs
ICMP_UNREACH, FRAG_NEEDED = 3, 4


def check_target_listens(c: Captures, f: Facts, n: Net) -> Step:
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


def _refusals(pkts: Sequence[Pkt], n: Net) -> tuple[int, int]:
    """(RSTs the target sent to copied connections, SYN-ACKs it sent)."""
    rsts = count(pkts, lambda p: p.direction == OUTBOUND and n.answer(p) and p.rst)
    synacks = count(pkts, lambda p: p.direction == OUTBOUND and n.answer(p) and p.synack)
    return rsts, synacks


def check_target_accepts(c: Captures, f: Facts, n: Net) -> Step:
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


def check_target_backlog(c: Captures, f: Facts, n: Net) -> Step:
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


def check_path_mtu(c: Captures, f: Facts, n: Net) -> Step:
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
