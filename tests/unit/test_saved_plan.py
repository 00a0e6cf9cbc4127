"""Saved plans (`labctl plan --out`, `labctl up --plan`): a plan that no longer matches the facts
or the inventory is refused before anything is touched (FakeTransport proves only read-only
commands ran); broken plan files are usage errors that name the file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from labctl.errors import UsageError
from labctl.inventory.load import load_inventory
from labctl.model import Change, Plan
from labctl.transport import FakeTransport
from labctl.up import run as ops
from labctl.up import saved_plan
from tests.unit.test_ops import ROOT, _no_writes, _opts, fakes  # noqa: F401

INV = ROOT / "inventories/staging.yaml"


def _plan(fakes: dict[str, FakeTransport]) -> Plan:  # noqa: F811
    report = ops.plan(load_inventory(INV), _opts(fakes))
    assert report.plan is not None and not report.refused
    return report.plan


def test_round_trip_and_current_plan_applies(fakes: dict[str, FakeTransport],  # noqa: F811
                                             tmp_path: Path) -> None:
    plan = _plan(fakes)
    path = str(tmp_path / "p.json")
    digest = saved_plan.save(path, plan, str(INV), INV.read_text(), fix=False)
    saved = saved_plan.load(path)
    assert saved.digest == digest and saved.lab == plan.lab
    assert len(saved.changes) == len(plan.changes)
    assert [c.step for c in plan.daemons] == ["daemon:intercept", "daemon:tcpcopy"]
    assert [c.step for c in plan.changes[-2:]] == ["daemon:intercept", "daemon:tcpcopy"]
    tcpcopy = saved.changes[-1]
    assert tcpcopy["daemon"]["name"] == "tcpcopy" and "-C" in tcpcopy["daemon"]["args"]
    assert tcpcopy["daemon"]["ready"] == {"kind": "connected", "port": 0}
    assert saved.changes[-2]["daemon"]["ready"] == {"kind": "listening", "port": 36524}
    assert saved_plan.differences(saved, plan.lab, INV.read_text(), plan) == []
    # `up --plan` with a current plan gets past the check (dry run: still touches nothing)
    report = ops.up(load_inventory(INV), _opts(
        fakes, dry_run=True, saved_plan=saved,
        inventory_text=INV.read_text()))
    assert not report.refused and not report.stale
    _no_writes(fakes)


def test_changed_facts_make_the_plan_stale(fakes: dict[str, FakeTransport],  # noqa: F811
                                           tmp_path: Path) -> None:
    plan = _plan(fakes)
    path = str(tmp_path / "p.json")
    route = next(c for c in plan.changes if c.guarded)
    # the plan as it was when the target had another gateway for the client network
    old_apply = tuple(tuple("192.0.2.99" if a.count(".") == 3 and "/" not in a else a
                            for a in argv) for argv in route.apply)
    old = Plan(plan.lab, tuple(dataclasses.replace(c, apply=old_apply) if c is route else c
                               for c in plan.changes), plan.notes)
    saved_plan.save(path, old, str(INV), INV.read_text(), fix=False)
    saved = saved_plan.load(path)
    report = ops.up(load_inventory(INV), _opts(
        fakes, saved_plan=saved, inventory_text=INV.read_text()))
    assert report.refused and not report.steps and not report.shipped
    assert any(d.startswith("changed [target] route-") and "apply: " in d and "192.0.2.99" in d
               for d in report.stale), report.stale
    _no_writes(fakes)
    err = saved_plan.stale_error(saved, report.stale)
    assert path in err.message and "stale" in err.message and "nothing was changed" in err.message
    assert err.exit_code == 1


def test_edited_inventory_makes_the_plan_stale(fakes: dict[str, FakeTransport],  # noqa: F811
                                               tmp_path: Path) -> None:
    plan = _plan(fakes)
    path = str(tmp_path / "p.json")
    saved_plan.save(path, plan, str(INV), INV.read_text(), fix=False)
    diffs = saved_plan.differences(saved_plan.load(path), plan.lab,
                                   INV.read_text() + "\n# edited\n", plan)
    assert diffs == ["the inventory file changed since the plan was written"]
    assert saved_plan.differences(saved_plan.load(path), "other", INV.read_text(), plan)[0] \
        .startswith("the plan is for lab")


def test_reordered_changes_are_stale(fakes: dict[str, FakeTransport],  # noqa: F811
                                     tmp_path: Path) -> None:
    base = _plan(fakes)
    first = base.changes[0]
    plan = Plan(base.lab, (first, dataclasses.replace(first, step=first.step + "-2")))
    path = str(tmp_path / "p.json")
    saved_plan.save(path, Plan(plan.lab, tuple(reversed(plan.changes))), str(INV),
                    INV.read_text(), fix=False)
    diffs = saved_plan.differences(saved_plan.load(path), plan.lab, INV.read_text(), plan)
    assert diffs == ["the same changes, in a different order"]


@pytest.mark.parametrize("content, words", [
    ("not json {", "not JSON"),
    ('{"format": "terraform"}', "format 'terraform'"),
    ("[1, 2]", "format 'list'"),
    ('{"format": "labctl-plan/2", "lab": "x"}', "field 'inventory_sha256'"),
    ('{"format": "labctl-plan/1", "lab": "x"}', "written by an older labctl"),
    (json.dumps({"format": "labctl-plan/2", "lab": "x", "inventory_sha256": "0", "fix": False,
                 "created_at": 1, "changes": ["[x] a (route): b {}"], "digest": "0"}),
     "field 'changes[0]'"),
])
def test_bad_plan_files(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError) as exc:
        saved_plan.load(str(path))
    assert str(path) in exc.value.message and words in exc.value.message
    assert exc.value.exit_code == 2


def test_edited_plan_file_is_refused(fakes: dict[str, FakeTransport],  # noqa: F811
                                     tmp_path: Path) -> None:
    plan = _plan(fakes)
    path = tmp_path / "p.json"
    saved_plan.save(str(path), plan, str(INV), INV.read_text(), fix=False)
    data = json.loads(path.read_text())
    data["changes"][0]["step"] = data["changes"][0]["step"].replace("route", "rout3", 1)
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="digest mismatch"):
        saved_plan.load(str(path))


def test_missing_plan_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the plan file"):
        saved_plan.load(str(tmp_path / "nope.json"))


def test_changed_daemon_flags_make_the_plan_stale(fakes: dict[str, FakeTransport],  # noqa: F811
                                                  tmp_path: Path) -> None:
    plan = _plan(fakes)
    path = str(tmp_path / "p.json")

    def older(c: Change) -> Change:  # the plan as written when the inventory said -C 4
        if c.daemon is None or c.daemon.name != "tcpcopy":
            return c
        args = tuple("4" if a == "2" and c.daemon.args[i - 1] == "-C" else a
                     for i, a in enumerate(c.daemon.args))
        assert args != c.daemon.args
        return dataclasses.replace(c, daemon=dataclasses.replace(c.daemon, args=args))

    saved_plan.save(path, Plan(plan.lab, tuple(older(c) for c in plan.changes)), str(INV),
                    INV.read_text(), fix=False)
    diffs = saved_plan.differences(saved_plan.load(path), plan.lab, INV.read_text(), plan)
    assert diffs == ["changed [online1] daemon:tcpcopy: daemon.args: removed `4`, added `2`"], \
        diffs


def test_supervise_is_saved_digested_and_optional(fakes: dict[str, FakeTransport],  # noqa: F811
                                                  tmp_path: Path) -> None:
    """`plan --supervise --out F` records it (so `up --plan F` supervises without the flag);
    flipping it in the file breaks the digest; a file written before the field loads as
    unsupervised with its digest intact."""
    plan = _plan(fakes)
    path = tmp_path / "p.json"
    saved_plan.save(str(path), plan, str(INV), INV.read_text(), fix=False, supervise=True)
    assert saved_plan.load(str(path)).supervise is True
    data = json.loads(path.read_text())
    data["supervise"] = False
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="edited after it was written"):
        saved_plan.load(str(path))
    saved_plan.save(str(path), plan, str(INV), INV.read_text(), fix=False)
    data = json.loads(path.read_text())
    del data["supervise"]                                   # as an older labctl wrote it
    path.write_text(json.dumps(data))
    assert saved_plan.load(str(path)).supervise is False
    data["supervise"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="'supervise' must be true or false"):
        saved_plan.load(str(path))
