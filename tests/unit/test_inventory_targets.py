"""`hosts.targets`: several targets, each with a role; `Inventory.targets` / `target_role`."""

from __future__ import annotations

import ipaddress

import pytest

from labctl.errors import InventoryError
from labctl.inventory.load import parse_inventory

HEAD = """\
lab: ab
topology: {topology}
hosts:
  online:
    - {{name: online1, address: 192.168.44.128}}
{targets}
  assistant: {{name: assistant, address: 192.168.44.136}}
services:
{services}
clients: {{pool: [192.168.50.x], networks: [192.168.50.0/24]}}
"""
TWO = """\
  targets:
    - {name: blue, address: 192.168.44.137, role: baseline}
    - {name: green, address: 192.168.44.138, role: candidate}"""
SERVICES = "  - {port: 80, target_port: 80}\n  - {port: 443, target_port: 8443}"


def _inv(targets: str = TWO, services: str = SERVICES, topology: str = "three-server") -> str:
    return HEAD.format(targets=targets, services=services, topology=topology)


def _error(text: str) -> str:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "ab.yaml")
    out = info.value.render()
    assert "Traceback" not in out
    return out


def test_two_targets_in_order_with_roles() -> None:
    inv = parse_inventory(_inv())
    assert [t.name for t in inv.targets] == ["blue", "green"]
    assert inv.target_role("blue") == "baseline"
    assert inv.target_role(inv.targets[1]) == "candidate"
    assert [r for r, _ in inv.hosts_by_role()] == ["online", "target", "target", "assistant"]
    assert inv.role_of("green") == "target"
    assert inv.intercept_host.name == "assistant"
    assert inv.log_for(inv.targets[1]) == inv.logs.target
    with pytest.raises(KeyError):
        inv.target_role("online1")


def test_copy_destinations_one_per_service_and_target() -> None:
    inv = parse_inventory(_inv())
    got = [(s.port, t.name, str(a)) for s, t, a in inv.copy_destinations()]
    assert got == [(80, "blue", "192.168.44.137"), (80, "green", "192.168.44.138"),
                   (443, "blue", "192.168.44.137"), (443, "green", "192.168.44.138")]
    assert [str(a) for a in inv.target_addresses()] == ["192.168.44.137", "192.168.44.138"]


def test_single_target_is_a_plain_list_of_one() -> None:
    inv = parse_inventory(_inv("  target: {name: t, address: 192.168.44.137}"))
    assert [t.name for t in inv.targets] == ["t"]
    assert inv.target_role("t") == "plain"
    assert inv.target_address(inv.services[0]) == ipaddress.IPv4Address("192.168.44.137")


def test_role_defaults_to_plain() -> None:
    inv = parse_inventory(_inv("  targets:\n    - {name: a, address: 192.168.44.137}"))
    assert inv.target_role("a") == "plain"


def test_target_and_targets_together_is_an_error() -> None:
    text = _inv(TWO + "\n  target: {name: t, address: 192.168.44.139}")
    assert "hosts.targets: give hosts.target or hosts.targets, not both" in _error(text)


def test_neither_target_nor_targets_is_an_error() -> None:
    assert "hosts needs target: (one host) or targets:" in _error(_inv(""))


def test_empty_targets_list_is_an_error() -> None:
    assert "hosts.targets" in _error(_inv("  targets: []"))


def test_duplicate_target_names_and_addresses() -> None:
    same_name = TWO.replace("name: green", "name: blue")
    assert "ab.yaml:8: hosts.targets[1].name: host name 'blue' is used twice" in _error(
        _inv(same_name))
    same_addr = TWO.replace("192.168.44.138", "192.168.44.137").replace(
        "role: candidate}", "role: candidate, port: 2222}")
    assert "hosts.targets[1].address: 192.168.44.137 is already target blue" in _error(
        _inv(same_addr))


def test_a_target_cannot_also_be_the_assistant() -> None:
    text = _inv(TWO.replace("192.168.44.138", "192.168.44.136"))
    assert "hosts.assistant.address: 192.168.44.136:22 is already listed as target" in _error(
        text)


@pytest.mark.parametrize("role", ["baseline", "candidate"])
def test_at_most_one_baseline_and_one_candidate(role: str) -> None:
    text = _inv(TWO.replace("baseline", role).replace("candidate", role))
    assert f"hosts.targets[1].role: more than one {role} target (blue, green)" in _error(text)


def test_unknown_role() -> None:
    assert "hosts.targets[1].role" in _error(_inv(TWO.replace("candidate", "canary")))


def test_service_target_address_not_allowed_with_targets() -> None:
    text = _inv(services="  - {port: 80, target_port: 80, target_address: 192.168.44.140}")
    assert "services[0].target_address: target_address names one target" in _error(text)


def test_two_server_supports_exactly_one_target() -> None:
    text = _inv(topology="two-server").replace(
        "  assistant: {name: assistant, address: 192.168.44.136}\n", "").replace(
        "clients: {pool: [192.168.50.x], networks: [192.168.50.0/24]}", "")
    assert "hosts.targets: two-server topology supports exactly one target (2 given)" in _error(
        text)


def test_documented_ab_inventory_validates() -> None:
    from pathlib import Path

    from labctl.inventory.load import load_inventory

    root = Path(__file__).resolve().parents[2]
    inv = load_inventory(root / "inventories/staging-ab.yaml")
    assert [(t.name, inv.target_role(t)) for t in inv.targets] == [
        ("blue", "baseline"), ("green", "candidate")]
    assert inv.topology == "three-server" and inv.intercept_host.name == "assistant"
