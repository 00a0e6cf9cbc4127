"""Facts about hosts: what labctl reads before it checks, plans or changes anything.

    facts = gather_facts(pool, inventory)          # {host name: HostFacts}, hosts in parallel
    operator = gather_operator_facts()             # this machine's own addresses

Every fact is read-only. A fact that fails (tool missing, permission denied, odd output) is
recorded in `HostFacts.unknown[name]` with the reason and its field stays None; a host that
cannot be reached at all has `unreachable` set. Nothing here raises for a remote problem.

One module per subsystem (`routes`, `neigh`, `iptables`, `proc`, `sockets`, `system`); a fact is
an argv plus a pure parser (`base.Fact`), tested against recorded output.

May import: labctl.errors, labctl.model, labctl.inventory, labctl.transport.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional

from labctl.facts.base import Fact, FactParseError, run_fact, run_facts
from labctl.facts.iptables import IPTABLES, Ruleset, normalise_iptables_save
from labctl.facts.neigh import NEIGH, Neighbour
from labctl.facts.paths import PathStat, state_dirs_fact
from labctl.facts.proc import PROC_VALUES, Conntrack, ProcValues
from labctl.facts.routes import (
    ADDRS,
    ROUTES,
    Interface,
    Route,
    RouteGet,
    default_gateway,
    interface_with,
    parse_addrs,
    route_get_fact,
)
from labctl.facts.sockets import LISTENERS, Listener, tcp_probe_fact
from labctl.facts.system import (
    CPUS,
    IPTABLES_VERSION,
    PYPY,
    PYTHON,
    SSH_CONNECTION,
    SUDO,
    SYSTEMD,
    UID,
    IptablesVersion,
    PypyVersion,
    PythonVersion,
    SSHConnection,
)
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Result, Transport
from labctl.transport.local import LocalTransport
from labctl.transport.pool import HostPool

__all__ = [
    "Conntrack",
    "Fact",
    "FactParseError",
    "HostFacts",
    "Interface",
    "IptablesVersion",
    "Listener",
    "Neighbour",
    "OperatorFacts",
    "PathStat",
    "ProcValues",
    "PypyVersion",
    "PythonVersion",
    "Route",
    "RouteGet",
    "Ruleset",
    "SSHConnection",
    "gather_facts",
    "gather_host_facts",
    "gather_operator_facts",
    "normalise_iptables_save",
    "run_fact",
]

IPv4 = ipaddress.IPv4Address


@dataclass(frozen=True)
class HostFacts:
    """Everything known about one host. None = unknown (see `unknown` for why)."""

    host: str
    role: str
    address: IPv4
    python: Optional[PythonVersion] = None
    #: hosts that run a daemon (online, and the intercept host): `pypy3 --version` and `nproc`
    pypy: Optional[PypyVersion] = None
    cpus: Optional[int] = None
    uid: Optional[int] = None
    sudo: Optional[bool] = None  # `sudo -n true` worked (only asked when uid != 0)
    systemd: Optional[bool] = None
    ssh: Optional[SSHConnection] = None
    proc: Optional[ProcValues] = None
    routes: Optional[tuple[Route, ...]] = None
    interfaces: Optional[tuple[Interface, ...]] = None
    iptables: Optional[Ruleset] = None
    iptables_version: Optional[IptablesVersion] = None
    listeners: Optional[tuple[Listener, ...]] = None
    #: online hosts with engine.datalink: the neighbour (ARP) table
    neighbours: Optional[tuple[Neighbour, ...]] = None
    #: owner and mode of the state_dir, its lab dir and this host's dir, those that exist
    state_dirs: Optional[tuple[PathStat, ...]] = None
    #: `ip route get ADDR` answers, keyed by str(ADDR) (target: the assistant)
    route_gets: dict[str, RouteGet] = field(default_factory=dict)
    #: TCP probes "ADDR:PORT" -> connected (online: each service's target)
    tcp: dict[str, bool] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    unreachable: Optional[str] = None

    @property
    def privileged(self) -> Optional[bool]:
        """Root, or passwordless sudo; None if unknown."""
        if self.uid == 0:
            return True
        if self.uid is None:
            return None
        return self.sudo

    @property
    def ip_forward(self) -> Optional[int]:
        return self.proc.ip_forward if self.proc else None

    @property
    def conntrack(self) -> Optional[Conntrack]:
        return self.proc.conntrack if self.proc else None

    @property
    def default_gateway(self) -> Optional[IPv4]:
        return default_gateway(self.routes) if self.routes is not None else None

    @property
    def ifname(self) -> Optional[str]:
        """The interface carrying the host's inventory address."""
        if self.interfaces is None:
            return None
        itf = interface_with(self.interfaces, self.address)
        return itf.ifname if itf else None


def _facts_for(inventory: Inventory, spec: HostSpec, role: str) -> list[Fact[Any]]:
    facts: list[Fact[Any]] = [PYTHON, UID, SYSTEMD, SSH_CONNECTION, PROC_VALUES, ROUTES, ADDRS,
                              IPTABLES_VERSION, IPTABLES, LISTENERS,
                              state_dirs_fact(state_paths(inventory, spec))]
    if role == "online" or spec.name == inventory.intercept_host.name:
        facts += [PYPY, CPUS]  # engine.runtime and engine.workers: auto
    if role == "target" and inventory.hosts.assistant is not None:
        facts.append(route_get_fact(inventory.hosts.assistant.address))
    if role == "online":
        for service, _, address in inventory.copy_destinations():
            facts.append(tcp_probe_fact(address, service.target_port))
        if inventory.engine.datalink:
            # the egress dev and next hop of every target, and the MACs the host knows
            facts += [route_get_fact(a) for a in inventory.target_addresses()]
            facts.append(NEIGH)
    return facts


def state_paths(inventory: Inventory, spec: HostSpec) -> tuple[str, ...]:
    """The directories labctl keeps on `spec`: state_dir, state_dir/<lab>, and the host's own."""
    hdir = inventory.remote_dir(spec)
    lab_dir = hdir.rsplit("/", 1)[0]
    return (lab_dir.rsplit("/", 1)[0] or "/", lab_dir, hdir)


_SIMPLE = {"python", "pypy", "cpus", "uid", "systemd", "proc_values", "routes", "addrs",
           "iptables_version", "iptables", "listeners", "neighbours", "state_dirs"}
_FIELD = {"proc_values": "proc", "addrs": "interfaces", "ssh_connection": "ssh"}


def gather_host_facts(transport: Transport, spec: HostSpec, role: str,
                      inventory: Inventory) -> HostFacts:
    """Every fact for one host, in one or two round trips (see `run_facts`)."""
    values: dict[str, Any] = {}
    unknown: dict[str, str] = {}
    route_gets: dict[str, RouteGet] = {}
    tcp: dict[str, bool] = {}
    results = run_facts(transport, _facts_for(inventory, spec, role))
    if any(r.name == "uid" and r.known and r.value != 0 for r in results):
        results.append(run_fact(transport, SUDO))
    for r in results:
        if not r.known:
            unknown[r.name] = r.error or "unknown"
        elif r.name.startswith("route_get:") and isinstance(r.value, RouteGet):
            route_gets[r.name.split(":", 1)[1]] = r.value
        elif r.name.startswith("tcp:") and isinstance(r.value, bool):
            tcp[r.name.split(":", 1)[1]] = r.value
        elif r.name in _SIMPLE or r.name in _FIELD or r.name == "sudo":
            values[_FIELD.get(r.name, r.name)] = r.value
    return HostFacts(host=spec.name, role=role, address=spec.address, route_gets=route_gets,
                     tcp=tcp, unknown=unknown, **values)


def gather_facts(pool: HostPool, inventory: Inventory) -> dict[str, HostFacts]:
    """Facts of every inventory host, gathered in parallel; unreachable hosts are marked."""
    roles = {h.name: role for role, h in inventory.hosts_by_role()}
    outcomes = pool.each(lambda spec, t: gather_host_facts(t, spec, roles[spec.name], inventory),
                         phase="facts")
    out: dict[str, HostFacts] = {}
    for name, outcome in outcomes.items():
        spec = pool.specs[name]
        if outcome.ok and outcome.value is not None:
            out[name] = outcome.value
        else:
            reason = getattr(outcome.error, "message", None) or str(outcome.error)
            out[name] = HostFacts(host=name, role=roles[name], address=spec.address,
                                  unreachable=reason)
    return out


@dataclass(frozen=True)
class OperatorFacts:
    """The machine labctl runs on: its own IPv4 addresses (SSH sources are in HostFacts.ssh)."""

    addresses: tuple[IPv4, ...] = ()


def gather_operator_facts(transport: Optional[Transport] = None) -> OperatorFacts:
    """Read this machine's addresses (`ip -j addr`); unknown -> no addresses."""
    value = run_fact(transport or LocalTransport("operator"), ADDRS)
    if not value.known or value.value is None:
        return OperatorFacts()
    return OperatorFacts(tuple(a.ip for itf in value.value for a in itf.addresses))


def parse_addresses(text: str) -> tuple[IPv4, ...]:
    """Helper for tests: addresses from recorded `ip -j addr` output."""
    return tuple(a.ip for itf in parse_addrs(Result("x", ("ip",), 0, text)) for a in itf.addresses)
