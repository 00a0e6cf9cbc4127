"""Preflight checks: pure functions of (inventory, facts, operator facts) -> findings.

Each finding has a stable id (listed in CHECK_IDS), a severity, a message, a fix hint, and
`refusal=True` when it protects the operator's SSH access (`--force` never skips those).
Facts that could not be gathered produce a WARN "could not check" finding instead of silence.
Fixes that labctl can make itself (`--fix`) are exposed as Changes by `fix_changes`.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Iterable, Mapping, Optional

from labctl.facts import HostFacts, OperatorFacts
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import ROUTE_PROTO, Change, Finding, Severity
from labctl.up.datalink import resolve_next_hops
from labctl.up.egress import CopyShape, refusing_rules
from labctl.up.plan import fix_changes_for
from labctl.up.runtime import MIN_PYTHON, check_runtime
from labctl.up.statedir import check_state_dir

Facts = Mapping[str, HostFacts]
Net = ipaddress.IPv4Network
IPv4 = ipaddress.IPv4Address
ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO

#: Narrowest prefix length allowed for a routed client network (wider is refused).
MIN_CLIENT_PREFIX = 16

CHECK_IDS = (
    "host.unreachable", "facts.unknown", "python.missing", "privilege.missing",
    "assistant.ip_forward", "conntrack.absent", "conntrack.usage", "conntrack.headroom",
    "target.rp_filter", "route.operator", "route.inventory_host", "route.gateway", "route.wide",
    "route.exists", "assistant.off_link", "pool.real_clients", "pool.inventory_host",
    "pool.unrouted", "drop.ssh_port", "service.unreachable", "intercept.port_busy",
    "datalink.mac_unknown", "target.not_listening", "online.output_refuses",
    "runtime.unavailable", "runtime.memory", "ssh.host_key_unchecked", "state_dir.unsafe",
    "privilege.sudo_command",  # labctl.up.sudo: needs the plan, so it runs after these
)


def run_checks(inventory: Inventory, facts: Facts, operator: OperatorFacts) -> list[Finding]:
    """Every preflight finding, errors first (stable order within a severity)."""
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(check(inventory, facts, operator))
    order = {ERROR: 0, WARN: 1, INFO: 2}
    return sorted(findings, key=lambda f: (order[f.severity], not f.refusal))


def _unknown(host: str, what: str, fact: str, hf: Optional[HostFacts]) -> Finding:
    why = hf.unknown.get(fact, "not gathered") if hf else "no facts"
    return Finding("facts.unknown", WARN, host, f"could not check {what}: {why}",
                   hint="install the missing tool or grant access, then run again")


def _reachable(facts: Facts) -> Iterable[HostFacts]:
    return (hf for hf in facts.values() if hf.unreachable is None)


# -- host basics ----------------------------------------------------------------------------
def check_reachable(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for hf in facts.values():
        if hf.unreachable is not None:
            yield Finding("host.unreachable", ERROR, hf.host, hf.unreachable,
                          hint="fix SSH access to this host (see the inventory's hosts section)")


def check_host_keys(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    """ssh.strict_host_key_checking: false is loud, per host: its key is not verified, so a
    man-in-the-middle could take the root session labctl opens."""
    if inv.ssh.strict_host_key_checking:
        return
    for spec in inv.all_hosts():
        jump = spec.jump if spec.jump is not None else inv.ssh.jump
        via = (f" (nor is its jump host {jump.address}'s)" if jump is not None and jump != "none"
               else "")
        yield Finding("ssh.host_key_unchecked", WARN, spec.name,
                      "ssh.strict_host_key_checking is false: this host's key is not "
                      f"checked{via}, "
                      "so anyone in the path could answer as it (and receive root commands)",
                      hint="put the keys in known_hosts (verify the fingerprints) and remove "
                           "strict_host_key_checking: false")


def check_python(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for hf in _reachable(facts):
        if hf.python is None:
            yield _unknown(hf.host, "python3", "python", hf)
        elif not hf.python.at_least(*MIN_PYTHON):
            yield Finding("python.missing", ERROR, hf.host,
                          f"python3 >= 3.9 is needed for the engine; found {hf.python}",
                          hint="install python3 (3.9 or newer) from the distribution")


def check_privilege(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    sudo = {h.name: h.sudo for h in inv.all_hosts()}
    for hf in _reachable(facts):
        if hf.privileged is None:
            yield _unknown(hf.host, "root/sudo", "uid", hf)
        elif not hf.privileged:
            yield Finding("privilege.missing", ERROR, hf.host,
                          "neither root nor passwordless sudo (`sudo -n true` failed)",
                          hint="connect as root, or allow NOPASSWD sudo and set sudo: true")
        elif hf.uid != 0 and not sudo.get(hf.host, False):
            yield Finding("privilege.missing", ERROR, hf.host,
                          f"the login user (uid {hf.uid}) is not root and the host has no "
                          "`sudo: true`: labctl's changes would fail",
                          hint="set sudo: true on this host (passwordless sudo works here), "
                               "or connect as root")


# -- assistant, conntrack, rp_filter -------------------------------------------------------
def check_ip_forward(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    spec = inv.hosts.assistant
    hf = facts.get(spec.name) if spec else None
    if spec is None or hf is None or hf.unreachable:
        return
    if hf.ip_forward is None:
        yield _unknown(spec.name, "ip_forward", "proc_values", hf)
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
            yield _unknown(spec.name, "conntrack", "proc_values", hf)
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
        yield _unknown(spec.name, "rp_filter", "proc_values" if hf.proc is None else "addrs", hf)
        return
    value = hf.proc.effective_rp_filter(hf.ifname)
    if value:
        yield Finding("target.rp_filter", WARN, spec.name,
                      f"rp_filter={value} on {hf.ifname}: copied packets from fake clients may "
                      "be dropped unless their route uses the same interface",
                      hint=f"run with --fix to set rp_filter=0 on all and {hf.ifname} "
                      "(undone by down)")


# -- the client route on the target (three-server) ---------------------------------------
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
            yield _refusal("route.operator", target,
                           f"client network {net} contains the operator's address {addr}: the "
                           "route would cut your SSH session", "choose a client network that "
                           "does not contain your own address")
        for addr, name in hosts.items():
            if addr in net:
                yield _refusal("route.inventory_host", target,
                               f"client network {net} contains inventory host {name} ({addr})",
                               "the fake client network must not contain any lab host")
        if gateway is not None and gateway in net:
            yield _refusal("route.gateway", target,
                           f"client network {net} contains the target's gateway {gateway}",
                           "choose a client network that does not contain the gateway")
        if net.prefixlen < MIN_CLIENT_PREFIX:
            yield _refusal("route.wide", target,
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


def _refusal(check_id: str, host: str, message: str, hint: str) -> Finding:
    return Finding(check_id, ERROR, host, message, hint=hint, refusal=True)


def check_on_link(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for target in inv.targets:
        yield from _on_link(inv.hosts.assistant, facts.get(target.name))


def _on_link(spec: Optional[HostSpec], hf: Optional[HostFacts]) -> Iterable[Finding]:
    if spec is None or hf is None or hf.unreachable:
        return
    got = hf.route_gets.get(str(spec.address))
    if got is None:
        yield _unknown(hf.host, "whether the assistant is on-link", f"route_get:{spec.address}",
                       hf)
    elif not got.on_link:
        how = f"via gateway {got.gateway}" if got.reachable else "not reachable at all"
        yield _refusal("assistant.off_link", hf.host,
                       f"the assistant {spec.address} is {how} from the target, so a route via "
                       "it cannot work (the seed's cross-subnet failure)",
                       "put the assistant in the target's subnet, or use topology: two-server")


# -- the fake client pool -------------------------------------------------------------------
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
                yield _refusal("drop.ssh_port", h.name,
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
                yield _unknown(spec.name, f"reachability of {key}", f"tcp:{key}", hf)
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
        yield _unknown(spec.name, "the intercept port", "listeners", hf)
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


_CHECKS: tuple[Callable[[Inventory, Facts, OperatorFacts], Iterable[Finding]], ...] = (
    check_reachable, check_host_keys, check_python, check_privilege, check_ip_forward,
    check_conntrack, check_rp_filter, check_client_route, check_on_link, check_pool,
    check_drop_rule, check_service, check_target_listens, check_intercept_port, check_datalink,
    check_output_rules, check_runtime, check_state_dir,
)


def refusals(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.refusal]


def blocking(findings: Iterable[Finding], force: bool = False,
             strict: bool = False) -> list[Finding]:
    """Findings that stop `up`: every error (with --strict every warning too), or with
    --force only the refusals."""
    return [f for f in findings
            if f.refusal or ((f.blocks or (strict and f.severity is WARN)) and not force)]


def fix_changes(inventory: Inventory, facts: Facts, findings: Iterable[Finding]) -> list[Change]:
    """The Changes `--fix` would add for fixable findings (ip_forward, rp_filter, conntrack)."""
    return fix_changes_for(inventory, facts, {f.id for f in findings})
