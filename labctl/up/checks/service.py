"""The copy path: the fake client pool, the two-server DROP rule, the copied service
reachable and listening, intercept's port, the data-link next hops, online's OUTPUT rules."""

from __future__ import annotations

from typing import Iterable

from labctl.facts import OperatorFacts
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import Finding
from labctl.up.checks.base import (
    ERROR,
    WARN,
    Facts,
    IPv4,
    Net,
    refusal,
    unknown_fact,
)
from labctl.up.datalink import resolve_next_hops
from labctl.up.egress import CopyShape, refusing_rules


def check_pool(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    where = inv.hosts.online[0].name
    pools = inv.clients.pool_networks()
    for pool in pools:
        for real in inv.clients.real_networks:
            if pool.overlaps(real):
                yield Finding("pool.real_clients", ERROR, where,
                              f"fake client pool {pool} overlaps real clients {real}: copies "
                              "would reuse real client addresses", hint="choose a disjoint pool")
        for h in inv.all_hosts():
            if h.address in pool:
                yield Finding("pool.inventory_host", ERROR, where,
                              f"fake client pool {pool} contains inventory host {h.name} "
                              f"({h.address})", hint="choose a pool without lab hosts")
        if inv.topology == "three-server" and not any(
            pool.subnet_of(net) for net in inv.clients.networks
        ):
            yield Finding("pool.unrouted", ERROR, where,
                          f"fake client pool {pool} is not inside clients.networks: the "
                          "target's replies would go to the real network",
                          hint="add the pool's network to clients.networks")


def check_drop_rule(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    if inv.topology != "two-server":
        return
    ssh_ports = {22, inv.targets[0].port, *(h.port for h in inv.hosts.online)}
    for service in inv.services:
        if service.target_port in ssh_ports:
            for h in inv.hosts.online:
                yield refusal("drop.ssh_port", h.name,
                               f"the DROP rule for replies from the target's port "
                               f"{service.target_port} would match SSH", "copy a non-SSH port, "
                               "or use the three-server topology")


def check_service(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for spec in inv.hosts.online:
        hf = facts.get(spec.name)
        if hf is None or hf.unreachable:
            continue
        for service, target, address in inv.copy_destinations():
            key = f"{address}:{service.target_port}"
            ok = hf.tcp.get(key)
            if ok is None:
                yield unknown_fact(spec.name, f"reachability of {key}", f"tcp:{key}", hf)
            elif not ok and not _not_listening(facts, target, address, service.target_port):
                # (nothing listening there is target.not_listening's warning: the service
                # may start later; a listening service that cannot be reached is an error)
                yield Finding("service.unreachable", ERROR, spec.name,
                              f"cannot connect to the target service {key} from here",
                              hint="start the service on the target or open the firewall")


def _not_listening(facts: Facts, target: HostSpec, address: IPv4, port: int) -> bool:
    """The target's own socket table shows nothing listening on address:port."""
    hf = facts.get(target.name)
    if hf is None or hf.unreachable or hf.listeners is None:
        return False
    return not any(lst.port == port and lst.covers(address) for lst in hf.listeners)


def check_target_listens(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    """Something listens on every copied port of every target (its own socket table): else
    every copy is refused (a RST to each SYN). A warning: the service may start later."""
    for service, target, address in inv.copy_destinations():
        if _not_listening(facts, target, address, service.target_port):
            yield Finding("target.not_listening", WARN, target.name,
                          f"nothing listens on {address}:{service.target_port}: the target "
                          "would refuse every copy",
                          hint="start the service under test, or fix services[].target_port "
                               "(tcpcopy counts the refusals as target_refused)")


def check_intercept_port(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    spec = inv.intercept_host
    hf = facts.get(spec.name)
    if hf is None or hf.unreachable:
        return
    if hf.listeners is None:
        yield unknown_fact(spec.name, "the intercept port", "listeners", hf)
        return
    bind = inv.intercept.bind or spec.address
    for listener in hf.listeners:
        if listener.port == inv.intercept.port and (
            listener.covers(bind) or str(bind) == "0.0.0.0"
        ):
            yield Finding("intercept.port_busy", ERROR, spec.name,
                          f"port {inv.intercept.port} is already in use "
                          f"({listener.address}:{listener.port})",
                          hint="stop what listens there (an old intercept?) or change "
                          "intercept.port")


def check_datalink(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    """engine.datalink needs the egress device and next-hop MAC of every target (facts)."""
    if not inv.engine.datalink:
        return
    for spec in inv.hosts.online:
        hf = facts.get(spec.name)
        if hf is None or hf.unreachable:
            continue
        for problem in resolve_next_hops(inv, spec, facts).problems:
            yield Finding("datalink.mac_unknown", ERROR, spec.name,
                          f"engine.datalink: {problem.message}", hint=problem.hint)


def check_output_rules(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    """online's own OUTPUT rules that would refuse tcpcopy's raw-socket sends (a warning, with
    the rule and the setting that avoids it); none with engine.datalink (copies skip OUTPUT)."""
    if inv.engine.datalink:
        return
    for spec in inv.hosts.online:
        hf = facts.get(spec.name)
        if hf is None or hf.unreachable or hf.iptables is None:
            continue
        shape = CopyShape(pool=inv.clients.pool_networks() or [Net(f"{spec.address}/32")],
                          targets=inv.target_addresses(),
                          ports=sorted({s.target_port for s in inv.services}),
                          notrack=inv.conntrack.notrack)
        for r in refusing_rules(hf.iptables, shape):
            yield Finding("online.output_refuses", WARN, spec.name,
                          f"{r.table} {r.chain}: `{r.rule}` would refuse tcpcopy's sends "
                          f"(matches {r.why})", hint=r.fix)
