"""Routes and addresses from iproute2's JSON output (`ip -j`)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Optional

from labctl.facts.base import Fact, FactParseError, require_ok
from labctl.transport.base import Result

#: iproute2 prints these protocol numbers by name (rt_protos); everything else as a number.
PROTO_NAMES = {"redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "dhcp": 16}


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network
    table: str = "main"
    type: str = "unicast"
    gateway: Optional[ipaddress.IPv4Address] = None
    dev: str = ""
    protocol: str = "boot"
    scope: str = "global"
    prefsrc: Optional[ipaddress.IPv4Address] = None
    metric: int = 0

    @property
    def proto_number(self) -> Optional[int]:
        if self.protocol.isdigit():
            return int(self.protocol)
        return PROTO_NAMES.get(self.protocol)

    def key(self) -> str:
        """A stable one-line form used to compare route sets before/after."""
        gw = f" via {self.gateway}" if self.gateway else ""
        return (f"{self.table} {self.type} {self.dst}{gw} dev {self.dev} "
                f"proto {self.protocol} scope {self.scope} metric {self.metric}")


def _json(result: Result) -> list[dict[str, Any]]:
    text = require_ok(result).strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FactParseError(f"not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, list):
        raise FactParseError("expected a JSON list")
    return [d for d in data if isinstance(d, dict)]


#: The JSON list parser, for the other iproute2 facts (neigh).
json_items = _json


def _dst(raw: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network("0.0.0.0/0" if raw == "default" else raw, strict=False)


def _route(d: dict[str, Any]) -> Route:
    try:
        return Route(
            dst=_dst(str(d["dst"])),
            table=str(d.get("table", "main")),
            type=str(d.get("type", "unicast")),
            gateway=ipaddress.IPv4Address(d["gateway"]) if "gateway" in d else None,
            dev=str(d.get("dev", "")),
            protocol=str(d.get("protocol", "boot")),
            scope=str(d.get("scope", "global")),
            prefsrc=ipaddress.IPv4Address(d["prefsrc"]) if "prefsrc" in d else None,
            metric=int(d.get("metric", 0)),
        )
    except (KeyError, ValueError) as exc:
        raise FactParseError(f"route {d!r}: {exc}") from None


def parse_routes(result: Result) -> tuple[Route, ...]:
    return tuple(_route(d) for d in _json(result))


def default_gateway(routes: tuple[Route, ...]) -> Optional[ipaddress.IPv4Address]:
    for r in routes:
        if r.table == "main" and r.dst.prefixlen == 0 and r.gateway is not None:
            return r.gateway
    return None


@dataclass(frozen=True)
class RouteGet:
    """`ip route get ADDR`: how the host would reach ADDR. `reachable=False` if no route."""

    dst: ipaddress.IPv4Address
    reachable: bool
    gateway: Optional[ipaddress.IPv4Address] = None
    dev: str = ""
    prefsrc: Optional[ipaddress.IPv4Address] = None

    @property
    def on_link(self) -> bool:
        return self.reachable and self.gateway is None


def parse_route_get(addr: ipaddress.IPv4Address, result: Result) -> RouteGet:
    if result.exit_code == 2 and "unreachable" in result.stderr.lower():
        return RouteGet(addr, reachable=False)
    items = _json(result)
    if not items:
        raise FactParseError("empty answer from ip route get")
    d = items[0]
    if d.get("type") in ("unreachable", "blackhole", "prohibit"):
        return RouteGet(addr, reachable=False)
    return RouteGet(
        addr, True,
        gateway=ipaddress.IPv4Address(d["gateway"]) if "gateway" in d else None,
        dev=str(d.get("dev", "")),
        prefsrc=ipaddress.IPv4Address(d["prefsrc"]) if "prefsrc" in d else None,
    )


def route_get_fact(addr: ipaddress.IPv4Address) -> Fact[RouteGet]:
    return Fact(f"route_get:{addr}", ("ip", "-j", "route", "get", str(addr)),
                lambda r: parse_route_get(addr, r))


@dataclass(frozen=True)
class Interface:
    ifname: str
    index: int
    up: bool
    addresses: tuple[ipaddress.IPv4Interface, ...]
    #: link-layer address (`address` of an Ethernet link), lower case; None for other links
    mac: Optional[str] = None


def parse_addrs(result: Result) -> tuple[Interface, ...]:
    out = []
    for d in _json(result):
        try:
            addrs = tuple(
                ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
                for a in d.get("addr_info", [])
                if a.get("family") == "inet"
            )
            mac = str(d["address"]).lower() if d.get("link_type") == "ether" and d.get(
                "address") else None
            out.append(Interface(str(d["ifname"]), int(d["ifindex"]),
                                 "UP" in d.get("flags", []), addrs, mac))
        except (KeyError, ValueError) as exc:
            raise FactParseError(f"interface {d.get('ifname')!r}: {exc}") from None
    return tuple(out)


def interface_with(interfaces: tuple[Interface, ...],
                   address: ipaddress.IPv4Address) -> Optional[Interface]:
    for itf in interfaces:
        if any(a.ip == address for a in itf.addresses):
            return itf
    return None


ROUTES = Fact("routes", ("ip", "-4", "-j", "route", "show", "table", "all"), parse_routes)
ADDRS = Fact("addrs", ("ip", "-j", "addr", "show"), parse_addrs)
