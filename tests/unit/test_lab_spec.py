"""Pure parts of the lab: names, address plan, index choice, JSON round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labctl.errors import LabError, UsageError
from labctl.lab.spec import (
    lab_from_json,
    namespaces_of,
    operator_ifname,
    overlapping_routes,
    pick_index,
    plan_lab,
    validate_name,
)


@pytest.mark.parametrize("name", ["a", "t1", "abcdefgh", "h1a", "z9"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "1a", "A", "abcdefghi", "a-b", "a_b", "a b", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid lab name"):
        validate_name(name)


def test_interface_names_fit_the_kernel_limit() -> None:
    assert len(operator_ifname("abcdefgh")) <= 15
    assert namespaces_of("x")[-1] == "lc-x-router"


def test_address_plan() -> None:
    info = plan_lab("t1", 7, Path("/run/labctl-lab"))
    assert (info.lab_net, info.client_net, info.fake_pool) == (
        "10.77.7.0/24", "10.78.7.0/24", "10.79.7.0/24")
    assert info.operator_address == "10.77.7.1"
    assert info.router_address == "10.77.7.254"
    assert info.client_gateway == "10.78.7.1"
    addrs = {r: h.address for r, h in info.hosts.items()}
    assert addrs == {"client": "10.78.7.10", "online": "10.77.7.10", "target": "10.77.7.20",
                     "assistant": "10.77.7.30"}
    client = info.hosts["client"]
    assert client.extra_addresses[0] == "10.78.7.11" and client.extra_addresses[-1] == "10.78.7.19"
    assert client.gateway == "10.78.7.1"
    assert info.hosts["online"].netns == "lc-t1-online"
    assert info.hosts["target"].hostname == "target"
    assert info.hosts["online"].access_log == Path("/run/labctl-lab/t1/online/access.log")
    assert info.hosts["assistant"].access_log is None
    assert info.ns_argv("client") == ["ip", "netns", "exec", "lc-t1-client"]
    assert info.ssh_key == Path("/run/labctl-lab/t1/id_ed25519")
    assert info.known_hosts == Path("/run/labctl-lab/t1/known_hosts")
    assert info.router_ns == "lc-t1-router"
    assert "10.79.7.10" not in info.addresses()


def test_plan_rejects_bad_index() -> None:
    with pytest.raises(UsageError):
        plan_lab("t1", 0)
    with pytest.raises(UsageError):
        plan_lab("t1", 251)


def test_unknown_role_is_a_lab_error() -> None:
    with pytest.raises(LabError, match="no host 'router'"):
        plan_lab("t1", 1).host("router")


def test_pick_index_skips_used_and_overlapping() -> None:
    routes = ["0.0.0.0/0", "192.0.2.0/24", "10.77.2.0/24", "10.79.3.128/25"]
    assert pick_index([], routes) == 1
    assert pick_index([1], routes) == 4
    with pytest.raises(LabError, match="no free lab index"):
        pick_index([], ["10.64.0.0/10"])


def test_default_route_does_not_count_as_overlap() -> None:
    assert overlapping_routes(1, ["0.0.0.0/0"]) == []
    assert overlapping_routes(1, ["10.78.1.5/32", "10.0.0.0/8"]) == ["10.78.1.5/32", "10.0.0.0/8"]


def test_json_round_trip() -> None:
    info = plan_lab("rt", 3).with_pids({"online/sshd": 42}, 1.5)
    again = lab_from_json(info.to_json())
    assert again == info
    data = json.loads(info.to_json())
    assert data["hosts"]["online"]["access_log"] == "/run/labctl-lab/rt/online/access.log"
    assert list(data["hosts"]) == ["client", "online", "target", "assistant"]


def test_bad_json_names_the_file() -> None:
    with pytest.raises(LabError, match=re.escape("x/lab.json: not valid JSON")):
        lab_from_json("{", "x/lab.json")
    with pytest.raises(LabError, match=re.escape("x/lab.json: malformed lab description")):
        lab_from_json('{"name": "a"}', "x/lab.json")


def test_second_online_host_plan_and_links() -> None:
    from labctl.lab import net
    from labctl.lab.spec import namespaces_of

    one, two = plan_lab("fan", 3), plan_lab("fan", 3, online_hosts=2)
    assert list(one.hosts) == ["client", "online", "target", "assistant"]
    assert list(two.hosts) == ["client", "online", "online2", "target", "assistant"]
    assert two.hosts["online2"].address == "10.77.3.11" and two.hosts["online2"].has_nginx
    assert two.hosts["online2"].access_log != two.hosts["online"].access_log
    # offloads and wiring only touch the router ports of the hosts the lab has
    assert "p-online2" not in net.offload_links(one)[0][one.router_ns]
    assert "p-online2" in net.offload_links(two)[0][two.router_ns]
    # destroy knows every namespace a lab of either shape may own
    assert "lc-fan-online2" in namespaces_of("fan")
    with pytest.raises(UsageError, match="1 to 16 online hosts"):
        plan_lab("fan", 3, online_hosts=17)


def test_sixteen_online_hosts_plan_addresses_ports_and_pools() -> None:
    """`--online 16`: online, online2, online3..online16 at .103-.116 (clear of the targets,
    the assistant, the router and the operator), a router port each, every namespace known to
    destroy, and a disjoint share of the fake-client pool each in the lab's inventory."""
    from itertools import combinations

    from labctl.inventory.load import parse_inventory
    from labctl.lab import net
    from labctl.lab.inventory import render_lab_inventory
    from labctl.lab.spec import namespaces_of

    info = plan_lab("fleet", 5, online_hosts=16)
    onlines = [r for r in info.hosts if r.startswith("online")]
    assert onlines == ["online", "online2", *(f"online{k}" for k in range(3, 17))]
    addresses = [h.address for h in info.hosts.values()] + [info.router_address,
                                                            info.operator_address]
    assert len(set(addresses)) == len(addresses)
    assert info.hosts["online16"].address == "10.77.5.116"
    assert all(info.hosts[r].has_nginx and info.hosts[r].has_sshd for r in onlines)
    ports = net.offload_links(info)[0][info.router_ns]
    assert all(f"p-{r}" in ports and len(f"p-{r}") <= 15 for r in onlines)
    assert set(info.namespaces) <= set(namespaces_of("fleet"))
    inv = parse_inventory(render_lab_inventory(info), source="lab.yaml")
    assert [h.name for h in inv.hosts.online] == onlines
    pools = [set(inv.pool(h)) for h in inv.hosts.online]
    assert all(len(p) >= 15 for p in pools)
    assert all(not a & b for a, b in combinations(pools, 2))
    assert len({inv.log_for(h).path for h in inv.hosts.online}) == 16


def test_second_target_plan_links_and_routes() -> None:
    from labctl.lab import net
    from labctl.lab.spec import namespaces_of

    one, two = plan_lab("ab", 4), plan_lab("ab", 4, targets=2)
    assert one == plan_lab("ab", 4, targets=1)      # --targets 1 is today's lab, unchanged
    assert list(two.hosts) == ["client", "online", "target", "target2", "assistant"]
    t2 = two.hosts["target2"]
    assert (t2.address, t2.netns) == ("10.77.4.21", "lc-ab-target2")
    assert t2.has_nginx and t2.has_sshd and t2.access_log != two.hosts["target"].access_log
    assert net.host_routes(two, "target2") == net.host_routes(two, "target") == [
        ("10.78.4.0/24", "10.77.4.30")]
    assert "p-target2" in net.offload_links(two)[0][two.router_ns]
    assert "p-target2" not in net.offload_links(one)[0][one.router_ns]
    assert "lc-ab-target2" in namespaces_of("ab")
    both = plan_lab("ab", 4, online_hosts=2, targets=2)
    assert list(both.hosts) == ["client", "online", "online2", "target", "target2",
                                "assistant"]
    with pytest.raises(UsageError):
        plan_lab("ab", 4, targets=3)
