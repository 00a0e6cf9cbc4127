"""`labctl lab up`, demo and drills write the lab's inventory where `up`/`down` find it."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.inventory.load import parse_inventory
from labctl.lab.inventory import TOPOLOGIES, lab_inventory_path, write_lab_inventory
from labctl.lab.spec import plan_lab


def test_both_topologies_are_written_under_the_local_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    info = plan_lab("demo", 1)
    for topology in TOPOLOGIES:
        path, text = write_lab_inventory(info, topology)
        assert path == lab_inventory_path("demo", topology)
        assert path.parent == tmp_path / "demo"
        inv = parse_inventory(path.read_text(), str(path))
        assert inv.lab == "demo" and inv.topology == topology
        assert text == path.read_text()
    assert lab_inventory_path("demo").name == "inventory.yaml"


def test_the_default_lab_matches_the_committed_local_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    from labctl.cli.lab import DEFAULT_NAME

    _, text = write_lab_inventory(plan_lab(DEFAULT_NAME, 1))
    committed = Path(__file__).resolve().parents[2] / "inventories" / "local.yaml"
    assert text == committed.read_text()


def test_lab_down_removes_what_lab_up_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labctl.lab.inventory import remove_lab_inventories

    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    info = plan_lab("demo", 1)
    written = [write_lab_inventory(info, t)[0] for t in TOPOLOGIES]
    assert sorted(remove_lab_inventories("demo")) == sorted(written)
    assert not (tmp_path / "demo").exists()
    assert remove_lab_inventories("demo") == []


def test_two_targets_are_baseline_and_candidate() -> None:
    from labctl.lab.inventory import render_lab_inventory

    info = plan_lab("ab", 4, targets=2)
    inv = parse_inventory(render_lab_inventory(info))
    assert [(t.name, str(t.address), inv.target_role(t)) for t in inv.targets] == [
        ("target", "10.77.4.20", "baseline"), ("target2", "10.77.4.21", "candidate")]
    assert [inv.log_for(t).path for t in inv.targets] == [
        str(info.hosts["target"].access_log), str(info.hosts["target2"].access_log)]
    two = parse_inventory(render_lab_inventory(info, "two-server"))
    assert [t.name for t in two.targets] == ["target"]      # two-server: exactly one target
    assert render_lab_inventory(plan_lab("ab", 4)) == render_lab_inventory(
        plan_lab("ab", 4, targets=1))
