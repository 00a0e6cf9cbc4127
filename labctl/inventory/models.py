"""The inventory schema: `Inventory` (the whole file), its derived views and the checks that
span sections (host roles, targets, topology, pool size).

Loading (YAML with line numbers, error messages naming file:line) lives in `labctl.inventory.load`;
this module only says what a valid inventory is. Every model forbids unknown keys. The `hosts:`
section is in `hosts`, `services:` `clients:` `intercept:` `logs:` `verify:` `conntrack:` in
`sections`, `engine:` in `engine_options`, `compare:` in `compare_options`, `ssh:` in
`ssh_options`, the fake client pool's arithmetic in `pool`, the shared base model in `base`; all
importable here.
"""

from __future__ import annotations

import ipaddress
from typing import Literal, Optional

from pydantic import Field
from pydantic import model_validator as _model_validator

from labctl.inventory.base import FieldProblem, _Frozen
from labctl.inventory.compare_options import Compare
from labctl.inventory.engine_options import SELECT_RULES, Engine, Select, Strings
from labctl.inventory.hosts import HOST_NAME, Hosts, HostSpec, Role, TargetRole, TargetSpec
from labctl.inventory.pool import MAX_POOL_PER_HOST, pool_network, pool_size, split_pool
from labctl.inventory.sections import (
    LOG_FORMATS,
    Clients,
    Conntrack,
    Intercept,
    Logs,
    LogSpec,
    Service,
    Verify,
)
from labctl.inventory.ssh_options import JumpSpec, SSHOptions
from labctl.model import CHAIN_PREFIX

__all__ = ["HOST_NAME", "LAB_NAME", "LOG_FORMATS", "MAX_POOL_PER_HOST", "SELECT_RULES",
           "Clients", "Compare", "Conntrack", "Engine", "FieldProblem", "HostSpec", "Hosts",
           "Intercept", "Inventory", "JumpSpec", "LogSpec", "Logs", "Role", "SSHOptions",
           "Select", "Service", "Strings", "TargetRole", "TargetSpec", "Verify", "pool_network",
           "pool_size", "split_pool"]

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network

LAB_NAME = r"^[a-z][a-z0-9-]{0,15}$"


class Inventory(_Frozen):
    """A whole lab. Use `hosts_by_role()` / `host()` rather than walking `hosts` by hand."""

    lab: str = Field(pattern=LAB_NAME)
    topology: Literal["three-server", "two-server"] = "three-server"
    hosts: Hosts
    services: list[Service] = Field(min_length=1)
    clients: Clients = Clients()
    intercept: Intercept = Intercept()
    engine: Engine = Engine()
    logs: Logs = Logs()
    verify: Verify = Verify()
    compare: Compare = Compare()
    state_dir: str = Field(default="/var/lib/labctl", pattern=r"^/")
    conntrack: Conntrack = Conntrack()
    ssh: SSHOptions = SSHOptions()

    @_model_validator(mode="after")
    def _consistent(self) -> Inventory:
        _check_roles(self)
        _check_targets(self)
        _check_topology(self)
        _check_pool(self)
        return self

    # -- derived views -------------------------------------------------------------------
    @property
    def targets(self) -> list[HostSpec]:
        """Every target host in inventory order (`hosts.target` is a list of one)."""
        if self.hosts.targets is not None:
            return list(self.hosts.targets)
        assert self.hosts.target is not None        # Hosts' validator: one of the two
        return [self.hosts.target]

    def target_role(self, host: HostSpec | str) -> TargetRole:
        """`baseline`, `candidate` or `plain` (a single `hosts.target` is plain); KeyError
        when `host` (a spec or a name) is not a target."""
        name = host if isinstance(host, str) else host.name
        for t in self.targets:
            if t.name == name:
                return t.role if isinstance(t, TargetSpec) else "plain"
        raise KeyError(name)

    def is_target(self, host: HostSpec | str) -> bool:
        name = host if isinstance(host, str) else host.name
        return any(t.name == name for t in self.targets)

    def hosts_by_role(self) -> list[tuple[Role, HostSpec]]:
        """Every host with its role, online hosts first, then targets, then assistant."""
        out: list[tuple[Role, HostSpec]] = [("online", h) for h in self.hosts.online]
        out.extend(("target", t) for t in self.targets)
        if self.hosts.assistant is not None:
            out.append(("assistant", self.hosts.assistant))
        return out

    def log_for(self, host: HostSpec) -> LogSpec:
        """The access log verify reads on `host`: its role's spec, with the host's own path."""
        spec = self.logs.target if self.is_target(host) else self.logs.online
        return spec if host.access_log is None else LogSpec(path=host.access_log,
                                                            format=spec.format)

    def all_hosts(self) -> list[HostSpec]:
        return [h for _, h in self.hosts_by_role()]

    def host(self, name: str) -> HostSpec:
        for h in self.all_hosts():
            if h.name == name:
                return h
        raise KeyError(name)

    def role_of(self, name: str) -> Role:
        for role, h in self.hosts_by_role():
            if h.name == name:
                return role
        raise KeyError(name)

    @property
    def intercept_host(self) -> HostSpec:
        """Where intercept runs: the assistant (three-server) or the target (two-server)."""
        return self.hosts.assistant or self.targets[0]

    @property
    def chain(self) -> str:
        """The labctl-owned iptables chain of this lab (<= 28 chars: prefix 7 + lab <= 16)."""
        return f"{CHAIN_PREFIX}{self.lab}"

    def target_address(self, service: Service, target: Optional[HostSpec] = None) -> IPv4:
        """Where `service` is copied to on `target` (default: the first target)."""
        return service.target_address or (target or self.targets[0]).address

    def copy_destinations(self) -> list[tuple[Service, HostSpec, IPv4]]:
        """Every (service, target, address) tcpcopy copies to: one `-x` each, services first,
        then targets in inventory order."""
        return [(s, t, self.target_address(s, t)) for s in self.services for t in self.targets]

    def target_addresses(self) -> list[IPv4]:
        """Every address copies are sent to (sorted, distinct)."""
        return sorted({a for _, _, a in self.copy_destinations()})

    def pool(self, online: HostSpec) -> list[str]:
        """tcpcopy `-c` entries for one online host (two-server default: its own address).

        With several online hosts each gets its own share of the pool: several tcpcopy
        instances feeding one target must never use the same fake tuple (the target and
        intercept's route table would mix their sessions), and only disjoint addresses make
        that certain (`-f` port shifts only make it unlikely)."""
        if not self.clients.pool:
            return [str(online.address)]
        onlines = [h.name for h in self.hosts.online]
        return split_pool(self.clients.pool, len(onlines), onlines.index(online.name))

    def remote_dir(self, host: HostSpec) -> str:
        """Per-lab, per-host state directory on the host."""
        return f"{self.state_dir.rstrip('/')}/{self.lab}/{host.name}"


def _role_paths(inv: Inventory) -> list[tuple[Role, HostSpec, tuple[str | int, ...]]]:
    out: list[tuple[Role, HostSpec, tuple[str | int, ...]]] = [
        ("online", h, ("hosts", "online", i)) for i, h in enumerate(inv.hosts.online)
    ]
    if inv.hosts.targets is not None:
        out.extend(("target", t, ("hosts", "targets", i)) for i, t in enumerate(inv.hosts.targets))
    else:
        out.append(("target", inv.targets[0], ("hosts", "target")))
    if inv.hosts.assistant is not None:
        out.append(("assistant", inv.hosts.assistant, ("hosts", "assistant")))
    return out


def _check_roles(inv: Inventory) -> None:
    names: dict[str, str] = {}
    endpoints: dict[tuple[IPv4, int], str] = {}
    for role, host, path in _role_paths(inv):
        if host.name in names:
            raise FieldProblem(
                (*path, "name"),
                f"host name {host.name!r} is used twice ({names[host.name]} and {role}); "
                "every host needs a unique name and exactly one role",
            )
        names[host.name] = role
        key = (host.address, host.port)
        if key in endpoints:
            raise FieldProblem(
                (*path, "address"),
                f"{host.address}:{host.port} is already listed as {endpoints[key]}; "
                f"a host can have only one role (here: {role} {host.name})",
            )
        endpoints[key] = f"{role} ({host.name})"


def _check_targets(inv: Inventory) -> None:
    if inv.hosts.targets is None:
        return
    seen: dict[IPv4, str] = {}
    for i, t in enumerate(inv.hosts.targets):
        if t.address in seen:
            raise FieldProblem(
                ("hosts", "targets", i, "address"),
                f"{t.address} is already target {seen[t.address]}; each target needs its own "
                "address (copies are sent to it)",
            )
        seen[t.address] = t.name
    for role in ("baseline", "candidate"):
        named = [i for i, t in enumerate(inv.hosts.targets) if t.role == role]
        if len(named) > 1:
            names = ", ".join(inv.hosts.targets[i].name for i in named)
            raise FieldProblem(
                ("hosts", "targets", named[1], "role"),
                f"more than one {role} target ({names}); "
                "compare pairs one baseline with one candidate: make the others role: plain",
            )
    for i, service in enumerate(inv.services):
        if service.target_address is not None:
            raise FieldProblem(
                ("services", i, "target_address"),
                "target_address names one target; with hosts.targets every service is copied "
                "to each target's own address (remove it, or use hosts.target)",
            )


def _check_pool(inv: Inventory) -> None:
    online = len(inv.hosts.online)
    if inv.clients.pool and pool_size(inv.clients.pool) < online:
        raise FieldProblem(
            ("clients", "pool"),
            f"{pool_size(inv.clients.pool)} fake address(es) for {online} online hosts: each "
            "online host's tcpcopy needs its own (their tuples must never collide at the "
            "target); give an a.b.c.x range or more addresses",
        )


def _check_topology(inv: Inventory) -> None:
    if inv.topology == "three-server":
        if inv.hosts.assistant is None:
            raise FieldProblem(
                ("hosts",),
                "three-server topology needs hosts.assistant; add one or set topology: two-server",
            )
        if not inv.clients.networks:
            raise FieldProblem(
                ("clients",),
                "three-server topology needs clients.networks (the nets the target routes via "
                "the assistant), e.g. [62.135.200.0/24]",
            )
        if not inv.clients.pool:
            raise FieldProblem(
                ("clients",),
                "three-server topology needs clients.pool (tcpcopy -c), e.g. [62.135.200.x]",
            )
    else:
        if len(inv.targets) > 1:
            raise FieldProblem(
                ("hosts", "targets"),
                f"two-server topology supports exactly one target ({len(inv.targets)} given): "
                "intercept runs on it; use topology: three-server with an assistant for several",
            )
        if inv.hosts.assistant is not None:
            raise FieldProblem(
                ("hosts", "assistant"),
                "two-server topology has no assistant (intercept runs on the target); "
                "remove hosts.assistant or set topology: three-server",
            )
        if inv.clients.networks:
            raise FieldProblem(
                ("clients", "networks"),
                "two-server topology routes nothing on the target; remove clients.networks",
            )
