"""The client route on the target (never through the operator's SSH path) and the
assistant on the target's link (three-server)."""

from __future__ import annotations

from typing import Iterable, Optional

from labctl.facts import HostFacts, OperatorFacts
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import ROUTE_PROTO, Finding
from labctl.up.checks.base import (
    ERROR,
    MIN_CLIENT_PREFIX,
    Facts,
    IPv4,
    Net,
    refusal,
    unknown_fact,
)


def _operator_addresses(facts: Facts, op: OperatorFacts) -> set[IPv4]:
    """This machine's addresses and the SSH sources the hosts see; never loopback (127.0.0.0/8
    is every machine's own, not an address a route on the target could take from us)."""
    found = set(op.addresses)
    for hf in facts.values():
        if hf.ssh is not None and isinstance(hf.ssh.client, IPv4):
            found.add(hf.ssh.client)
    return {a for a in found if not a.is_loopback}


def check_client_route(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for spec in inv.targets:
        yield from _client_route(inv, spec.name, facts, op)


def _client_route(inv: Inventory, target: str, facts: Facts,
                  op: OperatorFacts) -> Iterable[Finding]:
    hosts = {h.address: h.name for h in inv.all_hosts()}
    hf = facts.get(target)
    gateway = hf.default_gateway if hf else None
    operator = _operator_addresses(facts, op)
    for net in inv.clients.networks:
        for addr in sorted(a for a in operator if a in net):
            yield refusal("route.operator", target,
                           f"client network {net} contains the operator's address {addr}: the "
                           "route would cut your SSH session", "choose a client network that "
                           "does not contain your own address")
        for addr, name in hosts.items():
            if addr in net:
                yield refusal("route.inventory_host", target,
                               f"client network {net} contains inventory host {name} ({addr})",
                               "the fake client network must not contain any lab host")
        if gateway is not None and gateway in net:
            yield refusal("route.gateway", target,
                           f"client network {net} contains the target's gateway {gateway}",
                           "choose a client network that does not contain the gateway")
        if net.prefixlen < MIN_CLIENT_PREFIX:
            yield refusal("route.wide", target,
                           f"client network {net} is wider than /{MIN_CLIENT_PREFIX}",
                           f"use a /{MIN_CLIENT_PREFIX} or narrower network for the fake pool")
        yield from _existing_route(inv, hf, net)


def _existing_route(inv: Inventory, hf: Optional[HostFacts], net: Net) -> Iterable[Finding]:
    if hf is None or hf.routes is None:
        return
    for r in hf.routes:
        if r.table == "main" and r.dst == net and r.proto_number != ROUTE_PROTO:
            yield Finding("route.exists", ERROR, hf.host,
                          f"the target already has a route for {net} ({r.key()}) not made by "
                          "labctl", hint="remove it, or use another client network")


def check_on_link(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for target in inv.targets:
        yield from _on_link(inv.hosts.assistant, facts.get(target.name))


def _on_link(spec: Optional[HostSpec], hf: Optional[HostFacts]) -> Iterable[Finding]:
    if spec is None or hf is None or hf.unreachable:
        return
    got = hf.route_gets.get(str(spec.address))
    if got is None:
        yield unknown_fact(hf.host, "whether the assistant is on-link", f"route_get:{spec.address}",
                       hf)
    elif not got.on_link:
        how = f"via gateway {got.gateway}" if got.reachable else "not reachable at all"
        yield refusal("assistant.off_link", hf.host,
                       f"the assistant {spec.address} is {how} from the target, so a route via "
                       "it cannot work (the seed's cross-subnet failure)",
                       "put the assistant in the target's subnet, or use topology: two-server")
