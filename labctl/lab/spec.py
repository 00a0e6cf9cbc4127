"""The local lab as data: spec, address plan, LabInfo/HostInfo and their JSON form (pure).

Lab N uses 10.77.N.0/24 for online/target/assistant (+ router and operator), 10.78.N.0/24 for the
client, and reserves 10.79.N.0/24 as the fake-client pool (not routed by the lab itself).
Online hosts: `online` .10, `online2` .11, and with `--online N` up to `online16`: `onlineK`
(K = 3..16) at .100+K, clear of the targets (.20, .21), the assistant (.30) and the router.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from labctl.errors import LabError, UsageError

DEFAULT_BASE_DIR = Path("/run/labctl-lab")
NAME_RE = re.compile(r"[a-z][a-z0-9]{0,7}")
MAX_INDEX = 250
ROLES = ("client", "online", "target", "assistant")
#: Most online hosts a lab may have (`online`, `online2` ... `online16`: fan-in at fleet size).
MAX_ONLINE = 16
#: Every online role, in order: `online`, then `online2` .. `online16`.
ONLINE_ROLES = ("online", *(f"online{k}" for k in range(2, MAX_ONLINE + 1)))
#: With `online_hosts=2` (fan-in: several online servers copied to one target).
ROLES_2 = ("client", "online", "online2", "target", "assistant")
#: Every role a lab may have: `target2` with `targets=2` (one client copied to two targets).
ALL_ROLES = ("client", *ONLINE_ROLES, "target", "target2", "assistant")
SERVER_ROLES = (*ONLINE_ROLES, "target", "target2", "assistant")
NGINX_ROLES = (*ONLINE_ROLES, "target", "target2")
TARGET_ROLES = ("target", "target2")
HOST_OCTET = {"online": 10, "online2": 11, "target": 20, "target2": 21, "assistant": 30,
              **{f"online{k}": 100 + k for k in range(3, MAX_ONLINE + 1)}}
CLIENT_OCTET = 10
CLIENT_EXTRA_OCTETS = tuple(range(11, 20))
ROUTER_OCTET = 254
OPERATOR_OCTET = 1
CLIENT_GW_OCTET = 1
JSON_VERSION = 1


def validate_name(name: str) -> str:
    """Return `name` if it is a valid lab name ([a-z][a-z0-9]{0,7}), else raise UsageError."""
    if not NAME_RE.fullmatch(name or ""):
        raise UsageError(
            f"invalid lab name {name!r}",
            hint="a lab name is 1-8 characters: a lowercase letter, then lowercase letters/digits",
        )
    return name


def netns_name(name: str, role: str) -> str:
    """The namespace of a lab host or of the lab's router ('router')."""
    return f"lc-{name}-{role}"


def namespaces_of(name: str) -> list[str]:
    """Every namespace a lab named `name` may own, router last (it holds the bridge)."""
    return [netns_name(name, r) for r in ALL_ROLES] + [netns_name(name, "router")]


def operator_ifname(name: str) -> str:
    """The root-namespace veth of a lab (<= 15 characters for any valid name)."""
    return f"lc-{name}-op"


def lab_nets(index: int) -> tuple[str, str, str]:
    """(lab_net, client_net, fake_pool) of lab index N."""
    return f"10.77.{index}.0/24", f"10.78.{index}.0/24", f"10.79.{index}.0/24"


def pick_index(used: Iterable[int], routes: Iterable[str]) -> int:
    """First index 1..250 not in `used` whose three /24s overlap none of `routes` (CIDRs).

    Default routes (prefix length 0) are ignored: they overlap everything by definition.
    """
    taken = set(used)
    nets = [ipaddress.ip_network(r, strict=False) for r in routes]
    nets = [n for n in nets if n.prefixlen > 0 and n.version == 4]
    for index in range(1, MAX_INDEX + 1):
        if index in taken:
            continue
        mine = [ipaddress.ip_network(n) for n in lab_nets(index)]
        if not any(m.overlaps(n) for m in mine for n in nets):
            return index
    raise LabError(
        "no free lab index: every 10.77-79.N.0/24 (N=1..250) is used or overlaps a root route",
        hint="destroy unused labs with `labctl lab down --name NAME`",
    )


def overlapping_routes(index: int, routes: Iterable[str]) -> list[str]:
    """The routes (CIDRs, default routes ignored) that overlap lab `index`'s subnets."""
    mine = [ipaddress.ip_network(n) for n in lab_nets(index)]
    found = []
    for r in routes:
        net = ipaddress.ip_network(r, strict=False)
        if net.prefixlen > 0 and net.version == 4 and any(m.overlaps(net) for m in mine):
            found.append(r)
    return found


@dataclass(frozen=True)
class LabSpec:
    """What to build. `index` forces the lab index (else the first free one is picked)."""

    name: str = "lab"
    base_dir: Path = DEFAULT_BASE_DIR
    index: Optional[int] = None
    offloads_off: bool = True
    #: 1 to 16 online servers: `online`, `online2` (10.77.N.11), `onlineK` (10.77.N.100+K).
    online_hosts: int = 1
    #: 1, or 2 for a second target `target2` (10.77.N.21) beside `target`.
    targets: int = 1


@dataclass(frozen=True)
class HostInfo:
    """One lab host (a network namespace). access_log/error_log are set for nginx hosts only."""

    role: str
    netns: str
    ifname: str
    address: str
    ssh_port: int
    hostname: str
    dir: Path
    prefixlen: int = 24
    gateway: Optional[str] = None
    extra_addresses: tuple[str, ...] = ()
    access_log: Optional[Path] = None
    error_log: Optional[Path] = None

    @property
    def has_sshd(self) -> bool:
        return self.role in SERVER_ROLES

    @property
    def has_nginx(self) -> bool:
        return self.role in NGINX_ROLES


@dataclass(frozen=True)
class LabInfo:
    """A built (or planned) lab: names, addresses, paths. Saved as <dir>/lab.json."""

    name: str
    index: int
    dir: Path
    lab_net: str
    client_net: str
    fake_pool: str
    operator_address: str
    operator_ifname: str
    router_ns: str
    router_address: str
    client_gateway: str
    hosts: dict[str, HostInfo]
    ssh_key: Path
    known_hosts: Path
    pids: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0

    def ns_argv(self, role: str) -> list[str]:
        """Prefix that runs a command inside host `role`'s namespace."""
        return ["ip", "netns", "exec", self.host(role).netns]

    def host(self, role: str) -> HostInfo:
        try:
            return self.hosts[role]
        except KeyError:
            raise LabError(f"lab {self.name!r} has no host {role!r}") from None

    @property
    def namespaces(self) -> list[str]:
        return [h.netns for h in self.hosts.values()] + [self.router_ns]

    @property
    def json_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    def addresses(self) -> list[str]:
        """Every lab address the operator may reach (hosts, extra client addresses, router)."""
        out = [self.router_address, self.client_gateway]
        for h in self.hosts.values():
            out.append(h.address)
            out.extend(h.extra_addresses)
        return out

    def with_pids(self, pids: dict[str, int], created_at: float) -> LabInfo:
        return replace(self, pids=dict(pids), created_at=created_at)

    def to_dict(self) -> dict[str, Any]:
        d = {k: _jsonable(v) for k, v in self.__dict__.items() if k != "hosts"}
        d["hosts"] = {r: {k: _jsonable(v) for k, v in h.__dict__.items()} for r, h in
                      self.hosts.items()}
        d["version"] = JSON_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def lab_roles(online_hosts: int = 1, targets: int = 1) -> tuple[str, ...]:
    """The host roles of a lab, in ALL_ROLES order."""
    skip = set(ONLINE_ROLES[online_hosts:])
    skip |= {"target2"} if targets == 1 else set()
    return tuple(r for r in ALL_ROLES if r not in skip)


def plan_lab(name: str, index: int, base_dir: Path = DEFAULT_BASE_DIR,
             online_hosts: int = 1, targets: int = 1) -> LabInfo:
    """The complete address/name/path plan of lab `name` with index `index` (pure)."""
    validate_name(name)
    if not 1 <= index <= MAX_INDEX:
        raise UsageError(f"lab index {index} out of range 1..{MAX_INDEX}")
    if not 1 <= online_hosts <= MAX_ONLINE:
        raise UsageError(f"a lab has 1 to {MAX_ONLINE} online hosts, not {online_hosts}")
    if targets not in (1, 2):
        raise UsageError(f"a lab has 1 or 2 targets, not {targets}")
    lab_net, client_net, fake_pool = lab_nets(index)
    d = Path(base_dir) / name
    hosts = {r: _plan_host(name, r, index, d) for r in lab_roles(online_hosts, targets)}
    return LabInfo(
        name=name, index=index, dir=d, lab_net=lab_net, client_net=client_net,
        fake_pool=fake_pool, operator_address=f"10.77.{index}.{OPERATOR_OCTET}",
        operator_ifname=operator_ifname(name), router_ns=netns_name(name, "router"),
        router_address=f"10.77.{index}.{ROUTER_OCTET}",
        client_gateway=f"10.78.{index}.{CLIENT_GW_OCTET}", hosts=hosts,
        ssh_key=d / "id_ed25519", known_hosts=d / "known_hosts",
    )


def _plan_host(name: str, role: str, index: int, labdir: Path) -> HostInfo:
    hdir = labdir / role
    if role == "client":
        address = f"10.78.{index}.{CLIENT_OCTET}"
        extra = tuple(f"10.78.{index}.{o}" for o in CLIENT_EXTRA_OCTETS)
        gateway: Optional[str] = f"10.78.{index}.{CLIENT_GW_OCTET}"
    else:
        address, extra, gateway = f"10.77.{index}.{HOST_OCTET[role]}", (), None
    logs = role in NGINX_ROLES
    return HostInfo(
        role=role, netns=netns_name(name, role), ifname="eth0", address=address, ssh_port=22,
        hostname=role, dir=hdir, gateway=gateway, extra_addresses=extra,
        access_log=hdir / "access.log" if logs else None,
        error_log=hdir / "error.log" if logs else None,
    )


def lab_from_dict(d: dict[str, Any], source: str = "lab.json") -> LabInfo:
    """Rebuild a LabInfo from its JSON dict; raise LabError naming `source` on bad content."""
    try:
        hosts = {r: _host_from_dict(h) for r, h in d["hosts"].items()}
        return LabInfo(
            name=d["name"], index=int(d["index"]), dir=Path(d["dir"]), lab_net=d["lab_net"],
            client_net=d["client_net"], fake_pool=d["fake_pool"],
            operator_address=d["operator_address"], operator_ifname=d["operator_ifname"],
            router_ns=d["router_ns"], router_address=d["router_address"],
            client_gateway=d["client_gateway"], hosts=hosts, ssh_key=Path(d["ssh_key"]),
            known_hosts=Path(d["known_hosts"]),
            pids={k: int(v) for k, v in d.get("pids", {}).items()},
            created_at=float(d.get("created_at", 0.0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabError(f"{source}: malformed lab description ({type(exc).__name__}: {exc})",
                       hint="destroy the lab with `labctl lab down --name NAME`") from None


def _host_from_dict(h: dict[str, Any]) -> HostInfo:
    def opt_path(v: Any) -> Optional[Path]:
        return Path(v) if v else None

    return HostInfo(
        role=h["role"], netns=h["netns"], ifname=h["ifname"], address=h["address"],
        ssh_port=int(h["ssh_port"]), hostname=h["hostname"], dir=Path(h["dir"]),
        prefixlen=int(h.get("prefixlen", 24)), gateway=h.get("gateway"),
        extra_addresses=tuple(h.get("extra_addresses", ())),
        access_log=opt_path(h.get("access_log")), error_log=opt_path(h.get("error_log")),
    )


def lab_from_json(text: str, source: str = "lab.json") -> LabInfo:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LabError(f"{source}: expected a JSON object")
    return lab_from_dict(data, source)
