"""engine.datalink: next hops from facts (labctl.up.datalink) and tcpcopy's `-x …@MAC -o DEV`."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from labctl.errors import LabctlError, UsageError
from labctl.facts import HostFacts
from labctl.facts.neigh import Neighbour
from labctl.facts.routes import RouteGet
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.up.datalink import resolve_next_hops
from labctl.up.engine_args import EnginePaths, tcpcopy_argv
from labctl.up.launch import daemon_changes
from tests.unit.checks_facts import ROOT, A, healthy

TARGET = A("192.168.44.137")
GW = A("192.168.44.254")
TARGET_MAC = "02:00:00:00:01:37"
GW_MAC = "02:00:00:00:02:54"


def datalink_inventory(extra_service: str = "") -> Inventory:
    text = (ROOT / "inventories/staging.yaml").read_text().replace("datalink: false",
                                                                    "datalink: true")
    if extra_service:
        text = text.replace("  - {port: 80, target_port: 80}",
                            "  - {port: 80, target_port: 80}\n" + extra_service)
    return parse_inventory(text)


def with_macs(facts: dict[str, HostFacts], on_link: bool = True,
              neighbours: tuple[Neighbour, ...] = ()) -> dict[str, HostFacts]:
    """Online sees the target on-link (or via GW); the target's eth0 has TARGET_MAC."""
    out = dict(facts)
    t = facts["target"]
    assert t.interfaces is not None
    out["target"] = dataclasses.replace(t, interfaces=tuple(
        dataclasses.replace(i, mac=TARGET_MAC) if i.ifname == "eth0" else i
        for i in t.interfaces))
    rg = RouteGet(TARGET, True, None if on_link else GW, "eth0", A("192.168.44.128"))
    out["online1"] = dataclasses.replace(facts["online1"], route_gets={str(TARGET): rg},
                                         neighbours=neighbours)
    return out


def test_on_link_target_uses_the_targets_own_interface_mac() -> None:
    inv = datalink_inventory()
    res = resolve_next_hops(inv, inv.hosts.online[0], with_macs(healthy(inv)))
    assert res.problems == ()
    assert res.hops is not None and res.hops.device == "eth0"
    assert dict(res.hops.macs) == {str(TARGET): TARGET_MAC}


def test_routed_target_uses_the_gateways_neighbour_entry() -> None:
    inv = datalink_inventory()
    neigh = (Neighbour(GW, "eth1", "02:ff:ff:ff:ff:ff"), Neighbour(GW, "eth0", GW_MAC))
    res = resolve_next_hops(inv, inv.hosts.online[0], with_macs(healthy(inv), False, neigh))
    assert res.hops is not None and dict(res.hops.macs) == {str(TARGET): GW_MAC}
    missing = resolve_next_hops(inv, inv.hosts.online[0], with_macs(healthy(inv), False))
    assert missing.hops is None
    assert "gateway 192.168.44.254" in missing.problems[0].message
    assert "ping 192.168.44.254 once from online1" in missing.problems[0].hint
    assert "engine.datalink: false" in missing.problems[0].hint


def test_on_link_target_not_an_inventory_host_falls_back_to_the_neighbour_table() -> None:
    other = A("192.168.44.140")
    inv = datalink_inventory("  - {port: 81, target_port: 81, target_address: 192.168.44.140}")
    facts = with_macs(healthy(inv), neighbours=(Neighbour(other, "eth0", "02:00:00:00:01:40"),))
    facts["online1"] = dataclasses.replace(facts["online1"], route_gets={
        **facts["online1"].route_gets, str(other): RouteGet(other, True, None, "eth0")})
    res = resolve_next_hops(inv, inv.hosts.online[0], facts)
    assert res.hops is not None and res.hops.macs[str(other)] == "02:00:00:00:01:40"
    argv = tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths(
        output_device=res.hops.device, next_hop_macs=res.hops.macs))
    assert argv[1] == (f"80-192.168.44.137:80@{TARGET_MAC},"
                       "81-192.168.44.140:81@02:00:00:00:01:40")
    facts["online1"] = dataclasses.replace(facts["online1"], route_gets={
        **facts["online1"].route_gets, str(other): RouteGet(other, True, None, "eth1")})
    split = resolve_next_hops(inv, inv.hosts.online[0], facts)
    assert split.hops is None and "different interfaces (eth0, eth1)" in split.problems[-1].message


def test_unknown_route_and_unreachable_target_are_problems() -> None:
    inv = datalink_inventory()
    facts = healthy(inv)
    res = resolve_next_hops(inv, inv.hosts.online[0], facts)
    assert res.hops is None and "route to the target 192.168.44.137 unknown" in \
        res.problems[0].message
    facts["online1"] = dataclasses.replace(facts["online1"],
                                           route_gets={str(TARGET): RouteGet(TARGET, False)})
    res = resolve_next_hops(inv, inv.hosts.online[0], facts)
    assert res.hops is None and res.problems[0].message == "no route to the target 192.168.44.137"


def test_tcpcopy_argv_adds_macs_and_output_device() -> None:
    inv = datalink_inventory()
    argv = tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths(
        key_file="/k", output_device="eth0", next_hop_macs={str(TARGET): TARGET_MAC}))
    assert argv[:4] == ["-x", f"80-192.168.44.137:80@{TARGET_MAC}", "-o", "eth0"]
    assert shlex.join(argv).endswith("--key-file /k")
    plain = tcpcopy_argv(parse_inventory((ROOT / "inventories/staging.yaml").read_text()),
                         inv.hosts.online[0], EnginePaths(output_device="eth0",
                                                          next_hop_macs={str(TARGET): "x"}))
    assert plain[1] == "80-192.168.44.137:80" and "-o" not in plain


@pytest.mark.parametrize("paths", [EnginePaths(), EnginePaths(output_device="eth0"),
                                   EnginePaths(next_hop_macs={str(TARGET): TARGET_MAC})])
def test_tcpcopy_argv_refuses_datalink_without_next_hops(paths: EnginePaths) -> None:
    inv = datalink_inventory()
    with pytest.raises(UsageError, match=r"engine\.datalink: next hop unknown"):
        tcpcopy_argv(inv, inv.hosts.online[0], paths)


def test_daemon_changes_take_the_next_hops_from_facts() -> None:
    inv = datalink_inventory()
    changes = daemon_changes(inv, with_macs(healthy(inv)))
    tcpcopy = next(c.daemon for c in changes if c.daemon and c.daemon.name == "tcpcopy")
    assert f"80-192.168.44.137:80@{TARGET_MAC}" in tcpcopy.args
    assert tcpcopy.args[tcpcopy.args.index("-o") + 1] == "eth0"
    with pytest.raises(LabctlError, match="route to the target") as err:
        daemon_changes(inv, healthy(inv))
    assert err.value.host == "online1"

