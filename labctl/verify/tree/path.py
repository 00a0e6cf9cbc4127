"""The copy path's links (pure): daemons, conntrack, client traffic, copies leaving online and
arriving at the target, the target answering, answers reaching the assistant and being
black-holed there, intercept passing them on, no RST leak to a real client."""

from __future__ import annotations

from collections.abc import Sequence

from labctl.verify.tree.model import (
    CONNTRACK_FULL,
    INBOUND,
    OUTBOUND,
    ROUTE_QUESTION,
    RST_LEAK_SECONDS,
    Captures,
    Facts,
    Net,
    Pkt,
    Step,
    count,
)


def check_daemons(c: Captures, f: Facts, n: Net) -> Step:
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


def check_conntrack(c: Captures, f: Facts, n: Net) -> Step:
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


def check_client_traffic(c: Captures, f: Facts, n: Net) -> Step:
    q = "client traffic reaches online during the capture"
    if c.online is None:
        return Step(q, "skipped", "no capture from online")
    got = count(c.online, lambda p: p.direction == INBOUND and p.dport in n.ports
                 and not n.in_pool(p.src))
    if not got:
        return Step(q, "broken", "no client packets to the service port(s) "
                    f"{sorted(n.ports)} on online in the capture",
                    "nothing to copy: send traffic to online while diagnose runs, or check "
                    "services[].port in the inventory")
    return Step(q, "ok", f"{got} client packets")


def check_copies_leave(c: Captures, f: Facts, n: Net) -> Step:
    q = "tcpcopy sends copies from online"
    if c.online is None:
        return Step(q, "skipped", "no capture from online")
    got = count(c.online, lambda p: p.direction == OUTBOUND and n.copy(p))
    if not got:
        return Step(q, "broken", "online sent no packets from the client pool to the target",
                    "tcpcopy captures nothing: check its `captured` counter and log; if it is "
                    "0, capture on the right interface (datalink capture, -i) and filter")
    return Step(q, "ok", f"{got} copied packets left online")


def check_copies_arrive(c: Captures, f: Facts, n: Net) -> Step:
    q = "the copied SYNs reach the target"
    if c.target is None:
        return Step(q, "skipped", "no capture from the target")
    syns = count(c.target, lambda p: p.direction == INBOUND and n.copy(p) and p.syn)
    any_copy = count(c.target, lambda p: p.direction == INBOUND and n.copy(p))
    if not any_copy:
        return Step(q, "broken", "no packet from the client pool reached the target",
                    "something between online and target drops forged sources: anti-spoofing, "
                    "security groups or a firewall; keep them on one L2 segment")
    return Step(q, "ok", f"{syns} SYNs, {any_copy} copied packets arrived")


def check_target_answers(c: Captures, f: Facts, n: Net) -> Step:
    q = "the target answers the copies (SYN-ACKs)"
    if c.target is None:
        return Step(q, "skipped", "no capture from the target")
    answers = count(c.target, lambda p: p.direction == OUTBOUND and n.answer(p))
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
    bad = count(c.target, lambda p: p.direction == INBOUND and n.copy(p) and
                 p.csum_ok is False)
    if bad:
        return Step(q, "broken", f"{bad} copied packets arrived with bad TCP checksums",
                    "checksum offload mangles the copies: `ethtool -K IFACE tx off` on online, "
                    "or let the engine compute checksums")
    return Step(q, "broken", "copies arrive but the target sends nothing back",
                "is the service listening on the target port? is a firewall on the target "
                "dropping the pool addresses?")


def check_answers_reach_assistant(c: Captures, f: Facts, n: Net) -> Step:
    q = ROUTE_QUESTION
    if c.assistant is None:
        return Step(q, "skipped", "no capture from the assistant (two-server topology?)")
    got = count(c.assistant, lambda p: p.direction == INBOUND and n.answer(p))
    if got:
        return Step(q, "ok", f"{got} answers seen on the assistant")
    via = f.route_via or "its default gateway"
    return _route_broken(f, f"no answer reached the assistant; the target routes the pool "
                         f"via {via}")


def _route_broken(f: Facts, evidence: str) -> Step:
    return Step(ROUTE_QUESTION, "broken", evidence,
                f"on the target: ip route replace {' '.join(f.pool[:1]) or 'POOL'} via "
                f"{f.assistant_address or 'ASSISTANT'} (labctl up adds it; was it removed?)")


def check_blackhole(c: Captures, f: Facts, n: Net) -> Step:
    q = "the assistant black-holes the answers (ip_forward=0)"
    if c.assistant is None and f.ip_forward is None:
        return Step(q, "skipped", "no assistant")
    forwarded = count(c.assistant or (), lambda p: p.direction == OUTBOUND and n.answer(p))
    redirects = count(c.assistant or (), lambda p: p.icmp_type == 5)
    if f.ip_forward == 1 or forwarded:
        return Step(q, "broken", f"ip_forward={f.ip_forward}; {forwarded} answers forwarded on, "
                    f"{redirects} ICMP redirects: replies leak toward the clients",
                    "on the assistant: sysctl -w net.ipv4.ip_forward=0")
    return Step(q, "ok", f"ip_forward={f.ip_forward}, nothing forwarded")


def check_intercept(c: Captures, f: Facts, n: Net) -> Step:
    q = "intercept passes the answers back to tcpcopy"
    if f.intercept_routed_delta is None:
        return Step(q, "skipped", "no intercept counters")
    if f.intercept_routed_delta <= 0:
        return Step(q, "broken", "intercept routed no response during the capture",
                    "check intercept's filter (-F / -i) and that tcpcopy is connected to it "
                    "(`labctl status`); restart with `labctl down` + `labctl up`")
    return Step(q, "ok", f"intercept routed {f.intercept_routed_delta} responses")


def check_rst_leak(c: Captures, f: Facts, n: Net) -> Step:
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


def rst_after_synack(pkts: Sequence[Pkt], n: Net) -> int:
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
