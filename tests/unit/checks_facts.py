"""Constructed facts for check/plan tests: a healthy lab, then `dataclasses.replace` per case
(`with_host`, `proc_of`); inventories edited from the shipped ones (`edited`, `two_server`)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from labctl.facts import HostFacts, OperatorFacts
from labctl.facts.iptables import Ruleset
from labctl.facts.paths import PathStat
from labctl.facts.proc import Conntrack, ProcValues
from labctl.facts.routes import Interface, Route, RouteGet
from labctl.facts.sockets import Listener
from labctl.facts.system import PypyVersion, PythonVersion, SSHConnection
from labctl.inventory.load import load_inventory, parse_inventory
from labctl.inventory.models import Inventory

ROOT = Path(__file__).resolve().parents[2]
A = ipaddress.IPv4Address
N = ipaddress.IPv4Network
OPERATOR = A("192.168.44.1")


def inventory(name: str = "staging") -> Inventory:
    return load_inventory(ROOT / "inventories" / f"{name}.yaml")


def healthy(inv: Inventory) -> dict[str, HostFacts]:
    """Facts under which the inventory passes every check."""
    out = {}
    for role, spec in inv.hosts_by_role():
        net = ipaddress.IPv4Interface(f"{spec.address}/24")
        routes = (Route(dst=N("0.0.0.0/0"), gateway=A(str(net.network.network_address + 254)),
                        dev="eth0"),
                  Route(dst=net.network, dev="eth0", protocol="kernel", scope="link"))
        route_gets = {}
        if role == "target" and inv.hosts.assistant is not None:
            a = inv.hosts.assistant.address
            route_gets[str(a)] = RouteGet(a, True, None, "eth0", spec.address)
        tcp = {}
        if role == "online":
            tcp = {f"{a}:{s.target_port}": True for s, _, a in inv.copy_destinations()}
        out[spec.name] = HostFacts(
            host=spec.name, role=role, address=spec.address,
            python=PythonVersion(True, 3, 11, 2), uid=0, systemd=True,
            ssh=SSHConnection(OPERATOR, 50000, spec.address, spec.port),
            proc=ProcValues(0, Conntrack(True, 100, 262144),
                            {"all": 0, "default": 0, "eth0": 0, "lo": 0}),
            routes=routes,
            interfaces=(Interface("lo", 1, True, (ipaddress.IPv4Interface("127.0.0.1/8"),)),
                        Interface("eth0", 2, True, (net,))),
            iptables=Ruleset(True, {}),
            listeners=(Listener("0.0.0.0", 22), Listener(str(spec.address), 80)),
            route_gets=route_gets, tcp=tcp,
            state_dirs=(PathStat(inv.state_dir, 0, "root", 0o755, "directory"),),
            # daemon hosts: no pypy3 (engine.runtime auto -> python3), two CPUs
            **({"pypy": PypyVersion(False), "cpus": 2}
               if role == "online" or spec.name == inv.intercept_host.name else {}),
        )
    return out


def operator() -> OperatorFacts:
    return OperatorFacts((A("127.0.0.1"), OPERATOR))


def with_host(facts: dict[str, HostFacts], host: str, **changes: Any) -> dict[str, HostFacts]:
    out = dict(facts)
    out[host] = dataclasses.replace(facts[host], **changes)
    return out


def proc_of(facts: dict[str, HostFacts], host: str, **changes: Any) -> ProcValues:
    proc = facts[host].proc
    assert proc is not None
    return dataclasses.replace(proc, **changes)


def edited(text_from: str, old: str, new: str) -> Inventory:
    text = (ROOT / "inventories" / text_from).read_text()
    assert old in text
    return parse_inventory(text.replace(old, new))


def two_server(port: int = 80) -> Inventory:
    text = (ROOT / "inventories/staging.yaml").read_text()
    text = text.replace("topology: three-server", "topology: two-server")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("  assistant:"))
    text = text.replace("networks: [192.168.50.0/24]", "networks: []")
    text = text.replace("pool: [192.168.50.x]", "pool: []")
    text = text.replace("{port: 80, target_port: 80}", f"{{port: 80, target_port: {port}}}")
    return parse_inventory(text)
