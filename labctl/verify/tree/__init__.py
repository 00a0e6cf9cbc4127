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

The package: ``model`` (the values: ``Pkt``, ``Facts``, ``Captures``, ``Step``,
``Diagnosis``), ``path`` (the copy path's links), ``target`` (the target's own links); here
``TREE`` (the order) and ``walk``.
"""

from __future__ import annotations

from labctl.verify.tree.model import (
    INBOUND,
    OUTBOUND,
    ROUTE_QUESTION,
    Captures,
    Check,
    Diagnosis,
    Facts,
    Net,
    Pkt,
    Step,
)
from labctl.verify.tree.path import (
    check_answers_reach_assistant,
    check_blackhole,
    check_client_traffic,
    check_conntrack,
    check_copies_arrive,
    check_copies_leave,
    check_daemons,
    check_intercept,
    check_rst_leak,
    check_target_answers,
    rst_after_synack,
)
from labctl.verify.tree.target import (
    check_path_mtu,
    check_target_accepts,
    check_target_backlog,
    check_target_listens,
)

TREE: tuple[Check, ...] = (
    check_daemons, check_conntrack, check_client_traffic, check_copies_leave,
    check_copies_arrive, check_target_listens, check_target_answers, check_target_accepts,
    check_target_backlog, check_path_mtu, check_answers_reach_assistant,
    check_blackhole, check_intercept, check_rst_leak,
)


def walk(captures: Captures, facts: Facts) -> Diagnosis:
    """Run the checks in path order; after the first broken link the rest are skipped."""
    net = Net(facts)
    out = Diagnosis()
    for check in TREE:
        if out.broken is not None:
            step = check(captures, facts, net)
            out.steps.append(Step(step.question, "skipped", "after the first broken link"))
            continue
        out.steps.append(check(captures, facts, net))
    return out


__all__ = ["INBOUND", "OUTBOUND", "ROUTE_QUESTION", "TREE", "Captures", "Check", "Diagnosis",
           "Facts", "Pkt", "Step", "rst_after_synack", "walk"]
