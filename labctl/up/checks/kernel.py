"""The assistant's ip_forward, conntrack headroom, the target's rp_filter."""

from __future__ import annotations

from typing import Iterable

from labctl.facts import OperatorFacts
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import Finding
from labctl.up.checks.base import (
    ERROR,
    INFO,
    WARN,
    Facts,
    unknown_fact,
)


def check_ip_forward(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    spec = inv.hosts.assistant
    hf = facts.get(spec.name) if spec else None
    if spec is None or hf is None or hf.unreachable:
        return
    if hf.ip_forward is None:
        yield unknown_fact(spec.name, "ip_forward", "proc_values", hf)
    elif hf.ip_forward != 0:
        yield Finding("assistant.ip_forward", ERROR, spec.name,
                      "ip_forward=1: the assistant would forward the target's replies to real "
                      "clients", hint="run with --fix to set net.ipv4.ip_forward=0 (undone by "
                      "down), or set it yourself")


def check_conntrack(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    notrack = inv.conntrack.notrack
    for role, spec in inv.hosts_by_role():
        hf = facts.get(spec.name)
        if role == "assistant" or hf is None or hf.unreachable:
            continue
        ct = hf.conntrack
        if ct is None:
            yield unknown_fact(spec.name, "conntrack", "proc_values", hf)
            continue
        if not ct.loaded:
            yield Finding("conntrack.absent", INFO, spec.name,
                          "nf_conntrack is not loaded: no connection-tracking table to fill")
            continue
        fix = ("NOTRACK rules will be added (conntrack.notrack: true)" if notrack else
               "set conntrack.notrack: true (or --fix) to exempt the copied port, or raise "
               "net.netfilter.nf_conntrack_max")
        limit = inv.conntrack.max_usage
        projected = ct.count + inv.conntrack.expected_sessions * inv.engine.multiplier
        if ct.usage >= limit:
            yield Finding("conntrack.usage", WARN if notrack else ERROR, spec.name,
                          f"conntrack table {ct.count}/{ct.max} ({ct.usage:.0%}) is above "
                          f"{limit:.0%}: new connections will fail", hint=fix)
        elif projected > limit * ct.max:
            yield Finding("conntrack.headroom", INFO if notrack else WARN, spec.name,
                          f"{ct.count} tracked + {projected - ct.count} expected sessions "
                          f"exceeds {limit:.0%} of nf_conntrack_max={ct.max}", hint=fix)


def check_rp_filter(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for spec in inv.targets:
        yield from _rp_filter(spec, facts)


def _rp_filter(spec: HostSpec, facts: Facts) -> Iterable[Finding]:
    hf = facts.get(spec.name)
    if hf is None or hf.unreachable:
        return
    if hf.proc is None or hf.ifname is None:
        fact = "proc_values" if hf.proc is None else "addrs"
        yield unknown_fact(spec.name, "rp_filter", fact, hf)
        return
    value = hf.proc.effective_rp_filter(hf.ifname)
    if value:
        yield Finding("target.rp_filter", WARN, spec.name,
                      f"rp_filter={value} on {hf.ifname}: copied packets from fake clients may "
                      "be dropped unless their route uses the same interface",
                      hint=f"run with --fix to set rp_filter=0 on all and {hf.ifname} "
                      "(undone by down)")
