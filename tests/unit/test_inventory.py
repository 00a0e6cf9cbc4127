"""Inventory loading: good inventories validate, bad ones name file:line and the field."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from labctl.drill.runbook import RunbookError, parse_runbook
from labctl.errors import ExitCode, InventoryError
from labctl.inventory.load import load_inventory, parse_inventory, pool_network
from labctl.lab.inventory import render_lab_inventory
from tests.unit.labinfo_stub import lab_stub

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests/fixtures/inventories").glob("bad-*.yaml"))


def _expectations(path: Path) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    ]


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_inventory_is_rejected_with_place_and_field(path: Path) -> None:
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect:' lines"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    text = info.value.render()
    assert info.value.exit_code == ExitCode.USAGE
    assert "Traceback" not in text
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_staging_inventory_validates() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    assert inv.lab == "staging"
    assert inv.topology == "three-server"
    assert [h.name for h in inv.all_hosts()] == ["online1", "target", "assistant"]
    assert inv.intercept_host.name == "assistant"
    assert inv.chain == "LABCTL-staging"
    assert inv.remote_dir(inv.targets[0]) == "/var/lib/labctl/staging/target"
    assert inv.target_address(inv.services[0]) == ipaddress.IPv4Address("192.168.44.137")


def test_local_inventory_matches_rendered_lab_1() -> None:
    text = (ROOT / "inventories/local.yaml").read_text()
    assert text == render_lab_inventory(lab_stub("demo", 1))
    inv = parse_inventory(text)
    assert inv.lab == "demo"
    assert str(inv.targets[0].address) == "10.77.1.20"
    assert inv.clients.pool == ["10.79.1.x"]


def test_models_are_frozen() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        inv.lab = "other"


@pytest.mark.parametrize("topology", ["three-server", "two-server"])
def test_rendered_lab_inventory_validates_for_any_lab(topology: str) -> None:
    inv = parse_inventory(render_lab_inventory(lab_stub("t7", 42), topology))
    assert inv.lab == "t7"
    assert inv.topology == topology
    assert str(inv.hosts.online[0].address) == "10.77.42.10"
    assert inv.hosts.online[0].key == "/run/labctl-lab/t7/id_ed25519"
    assert inv.logs.target.path == "/run/labctl-lab/t7/target/access.log"
    if topology == "two-server":
        assert inv.hosts.assistant is None
        assert inv.pool(inv.hosts.online[0]) == ["10.77.42.10"]
    else:
        assert [str(n) for n in inv.clients.networks] == ["10.79.42.0/24"]


def test_missing_file_is_a_usage_error() -> None:
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory("/nonexistent/inventory.yaml")


def test_several_errors_reported_at_once() -> None:
    text = (ROOT / "inventories/staging.yaml").read_text()
    text = text.replace("port: 80, target_port: 80", "port: 0, target_port: x")
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "s.yaml")
    assert "services[0].port" in info.value.message
    assert "services[0].target_port" in info.value.message


def test_pool_network_forms() -> None:
    assert pool_network("62.135.200.x") == ipaddress.IPv4Network("62.135.200.0/24")
    assert pool_network("1.2.3.4") == ipaddress.IPv4Network("1.2.3.4/32")
    for bad in ("1.2.x.x", "1.2.3.256", "a.b.c.d", "1.2.3.4/24"):
        with pytest.raises(ValueError):
            pool_network(bad)


def test_local_inventory_matches_the_real_lab_plan() -> None:
    from labctl.lab.spec import plan_lab

    info = plan_lab("demo", 1)
    assert (ROOT / "inventories/local.yaml").read_text() == render_lab_inventory(info)
    inv = parse_inventory(render_lab_inventory(plan_lab("zz9", 77), "two-server"))
    assert inv.hosts.online[0].known_hosts == "/run/labctl-lab/zz9/known_hosts"


def test_yaml_bombs_and_deep_nesting_are_refused_fast() -> None:
    """Nested aliases (a 'billion laughs' bomb of a few hundred bytes) are refused before they
    expand; a file nested thousands of levels deep is refused, not a traceback."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdef", "bcdefg"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 400
    started = time.monotonic()
    with pytest.raises(InventoryError, match="aliases expand to more than 100,000"):
        parse_inventory(bomb, "bomb.yaml")
    with pytest.raises(RunbookError, match="aliases expand"):
        parse_runbook(bomb, "bomb.yaml")
    assert time.monotonic() - started < 2.0
    with pytest.raises(InventoryError, match="nested too deeply"):
        parse_inventory("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")


@pytest.mark.parametrize("old, new, field", [
    ("path: /var/log/nginx/access.log,", "path: \"-rf\",", "logs.online.path"),
    ("path: /var/log/nginx/access.log,", "path: logs/access.log,", "logs.online.path"),
])
def test_log_paths_must_be_absolute(old: str, new: str, field: str) -> None:
    """A relative log path depends on the remote working directory; one starting with `-`
    would be read as an option by the commands that get it."""
    text = (ROOT / "inventories/staging.yaml").read_text()
    assert old in text
    with pytest.raises(InventoryError) as info:
        parse_inventory(text.replace(old, new, 1), "s.yaml")
    assert field in info.value.message and "not an absolute path" in info.value.message
    bad_host = text.replace("sudo: false}", "sudo: false, access_log: -x}", 1)
    with pytest.raises(InventoryError, match="access_log"):
        parse_inventory(bad_host, "s.yaml")
