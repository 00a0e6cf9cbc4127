"""Which of an online host's OUTPUT rules would refuse tcpcopy's copies (pure).

tcpcopy sends each copy through a raw socket, so the copy crosses the host's own OUTPUT hooks
(raw, mangle, filter, security) like any locally generated packet: a DROP or REJECT there
refuses the send ("Operation not permitted", the C tool's `raw fd` errors). A copy goes from the
fake client pool to a target address and port over TCP; since the target's answers go to the
assistant, the host's conntrack never sees a reply, so every copied packet after the SYN is
`INVALID` to it (and the SYN `NEW`) unless `conntrack.notrack` exempts the copies.

`refusing_rules` reads `iptables-save` (``labctl.facts.iptables.Ruleset``) and returns every
DROP/REJECT rule whose matches a copy can satisfy, following jumps into user chains. It errs on
the side of warning: a match it cannot judge (owner, mark, a set…) counts as satisfiable, and
rule order (an ACCEPT before the DROP) is not modelled. A rule that matches by `-m statistic`
refuses a share of the copies. With `engine.datalink` copies leave by the link layer and
never meet OUTPUT (the caller skips this check).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from labctl.facts.iptables import Ruleset

OUTPUT_TABLES = ("raw", "mangle", "filter", "security")
REFUSING = ("DROP", "REJECT")
MAX_DEPTH = 8
NO_VALUE = frozenset({"--syn", "-f", "--fragment"})     # matches that take no value
Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class CopyShape:
    """What every copied packet looks like on the online host's way out."""

    pool: Sequence[Net]                  # the fake client sources
    targets: Sequence[ipaddress.IPv4Address]
    ports: Sequence[int]                 # the target ports
    notrack: bool = False                # conntrack.notrack: state matches see UNTRACKED


@dataclass(frozen=True)
class RefusingRule:
    table: str
    chain: str
    rule: str           # as iptables-save prints it, after `-A CHAIN `
    why: str            # what in it matches a copy ("every copy", "INVALID state", "a share")
    fix: str


def _net(text: str) -> Optional[Net]:
    try:
        return ipaddress.ip_network(text, strict=False)  # type: ignore[return-value]
    except ValueError:
        return None


def _ports(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.append((int(lo), int(hi or lo)))
    return out


def _matches(words: list[str], shape: CopyShape) -> Optional[str]:
    """None when no copy can match the rule's matches; else what makes copies match."""
    why = "every copy"
    i = 0
    while i < len(words):
        neg = words[i] == "!"
        if neg:
            i += 1
        if i >= len(words):
            break
        opt = words[i]
        val = words[i + 1] if i + 1 < len(words) else ""
        if opt in NO_VALUE:
            i += 1
            continue
        if opt in ("-s", "--source"):
            net = _net(val)
            if net is not None:
                # some copy's source is in NET / some copy's source is outside NET
                hit = (not all(p.subnet_of(net) for p in shape.pool) if neg
                       else any(p.overlaps(net) for p in shape.pool))
                if not hit:
                    return None
        elif opt in ("-d", "--destination"):
            net = _net(val)
            if net is not None:
                hit = (not all(t in net for t in shape.targets) if neg
                       else any(t in net for t in shape.targets))
                if not hit:
                    return None
        elif opt in ("-p", "--protocol"):
            tcp = val.lower() in ("tcp", "6", "all", "0")
            if tcp == neg:
                return None
        elif opt in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            ranges = _ports(val)
            inside = [any(lo <= p <= hi for lo, hi in ranges) for p in shape.ports]
            if ranges and not (not all(inside) if neg else any(inside)):
                return None
        elif opt in ("--state", "--ctstate"):
            states = {s.upper() for s in val.split(",")}
            seen = {"UNTRACKED"} if shape.notrack else {"NEW", "INVALID"}
            hit = bool(states & seen)
            if hit == neg:
                return None
            if not neg and "INVALID" in states and not shape.notrack:
                why = "the copies' INVALID conntrack state (no reply ever comes back here)"
        elif opt == "--probability" or opt == "--every":
            why = "a share of the copies (-m statistic)"
        i += 2                  # an option and its value (`-m MODULE` too)
    return why


def _target(words: list[str]) -> tuple[Optional[str], list[str]]:
    for i, w in enumerate(words):
        if w in ("-j", "--jump", "-g", "--goto") and i + 1 < len(words):
            return words[i + 1], words[:i]
    return None, words


def refusing_rules(rules: Ruleset, shape: CopyShape) -> list[RefusingRule]:
    """Every DROP/REJECT a copy can meet in the OUTPUT chains (and the chains they jump to)."""
    out: list[RefusingRule] = []

    def walk(table: str, chain: str, why_in: str, depth: int, seen: frozenset[str]) -> None:
        if depth > MAX_DEPTH or chain in seen:
            return
        for rule in rules.rules(table, chain):
            try:
                words = shlex.split(rule)
            except ValueError:
                continue
            target, matches = _target(words)
            why = _matches(matches, shape)
            if why is None or target is None:
                continue
            if why_in != "every copy" and why == "every copy":
                why = why_in
            if target in REFUSING:
                out.append(RefusingRule(table, chain, rule, why, _fix(why)))
            elif rules.chain(table, target) is not None:
                walk(table, target, why, depth + 1, seen | {chain})

    for table in OUTPUT_TABLES:
        walk(table, "OUTPUT", "every copy", 0, frozenset())
        c = rules.chain(table, "OUTPUT")
        if c is not None and c.policy == "DROP":
            out.append(RefusingRule(table, "OUTPUT", "-P OUTPUT DROP", "the chain's policy",
                                    _fix("every copy")))
    return out


def _fix(why: str) -> str:
    if "INVALID" in why:
        return ("set conntrack.notrack: true (the copies skip conntrack, so no INVALID state), "
                "or engine.datalink: true (copies leave by the link layer, past OUTPUT)")
    return ("set engine.datalink: true (copies leave by the link layer, past OUTPUT), or let "
            "the pool's packets to the target through this rule")


__all__ = ["CopyShape", "RefusingRule", "refusing_rules"]
