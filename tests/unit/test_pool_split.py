"""Several online hosts share the `-c` pool in disjoint parts (labctl.inventory.models), and the
local lab's inventory with two online hosts (per-host access logs)."""

from __future__ import annotations

import pytest

from labctl.errors import InventoryError
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import pool_size, split_pool
from labctl.lab.inventory import render_lab_inventory
from labctl.lab.spec import plan_lab


def test_split_whole_entries_round_robin() -> None:
    pool = ["10.9.1.x", "10.9.2.x", "10.9.3.x"]
    assert split_pool(pool, 1, 0) == pool
    assert split_pool(pool, 2, 0) == ["10.9.1.x", "10.9.3.x"]
    assert split_pool(pool, 2, 1) == ["10.9.2.x"]


def test_split_one_range_address_by_address() -> None:
    a, b = split_pool(["10.9.1.x"], 2, 0), split_pool(["10.9.1.x"], 2, 1)
    assert len(a) == 127 and len(b) == 127 and not set(a) & set(b)
    assert a[0] == "10.9.1.1" and b[0] == "10.9.1.2" and "10.9.1.254" in b
    assert split_pool(["10.9.1.5", "10.9.1.x"], 3, 2)[:2] == ["10.9.1.2", "10.9.1.5"]
    assert pool_size(["10.9.1.x", "10.9.2.7"]) == 255


def test_lab_inventory_with_two_online_hosts() -> None:
    info = plan_lab("fan", 9, online_hosts=2)
    for topology in ("three-server", "two-server"):
        inv = parse_inventory(render_lab_inventory(info, topology=topology), source="lab.yaml")
        one, two = inv.hosts.online
        assert (one.name, two.name) == ("online", "online2")
        assert inv.log_for(one).path.endswith("/online/access.log")
        assert inv.log_for(two).path.endswith("/online2/access.log")
        assert inv.log_for(inv.targets[0]).path == inv.logs.target.path
        pools = [inv.pool(one), inv.pool(two)]
        assert pools[0] and pools[1] and not set(pools[0]) & set(pools[1])
        if topology == "two-server":
            assert pools == [[str(one.address)], [str(two.address)]]
    single = parse_inventory(render_lab_inventory(plan_lab("one", 9)), source="lab.yaml")
    assert single.hosts.online[0].access_log is None
    assert single.pool(single.hosts.online[0]) == ["10.79.9.x"]


def test_pool_too_small_for_the_online_hosts_is_refused() -> None:
    text = render_lab_inventory(plan_lab("fan", 9, online_hosts=2)).replace(
        "pool: [10.79.9.x]", "pool: [10.79.9.7]")
    with pytest.raises(InventoryError) as exc:
        parse_inventory(text, source="lab.yaml")
    assert "clients.pool" in exc.value.message and "2 online hosts" in exc.value.message
