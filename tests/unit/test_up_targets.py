"""Several targets (`hosts.targets`): plan, engine flags, preflight, and up/down through
simulated hosts (tests.unit.up_hosts: every command scripted)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest

from labctl.facts import OperatorFacts
from labctl.facts.proc import Conntrack, ProcValues
from labctl.hosts.journal import load_local
from labctl.inventory.load import load_inventory
from labctl.model import ChangeKind
from labctl.transport import FakeTransport
from labctl.up import down as ops_down
from labctl.up import run as ops
from labctl.up.checks import run_checks
from labctl.up.engine_args import EnginePaths, intercept_argv, tcpcopy_argv
from labctl.up.plan import make_plan
from tests.unit.checks_facts import healthy, operator
from tests.unit.up_hosts import simulated_host

ROOT = Path(__file__).resolve().parents[2]
AB = ROOT / "inventories/staging-ab.yaml"


def _inv() -> Any:
    return load_inventory(AB)


def test_plan_routes_the_client_network_on_every_target() -> None:
    inv = _inv()
    plan = make_plan(inv, healthy(inv))
    assert [(c.host, c.step, c.kind) for c in plan.changes] == [
        ("blue", "route-192.168.50.0/24", ChangeKind.ROUTE),
        ("green", "route-192.168.50.0/24", ChangeKind.ROUTE)]
    assert all(c.guarded for c in plan.changes)
    assert plan.changes[1].apply == (("ip", "route", "add", "192.168.50.0/24", "via",
                                      "192.168.44.136", "proto", "252"),)


def test_notrack_and_rp_filter_fixes_on_every_target() -> None:
    inv = _inv()
    facts = healthy(inv)
    for name in ("blue", "green"):
        facts[name] = dataclasses.replace(facts[name], proc=ProcValues(
            0, Conntrack(True, 1, 100000), {"all": 1, "default": 1, "eth0": 0}))
    plan = make_plan(inv, facts, fix=True, notrack=True)
    steps = {(c.host, c.step) for c in plan.changes}
    for name in ("blue", "green"):
        assert (name, "rp_filter-all") in steps
        assert (name, "notrack-chain") in steps and (name, "notrack-80-d") in steps
    assert ("online1", "notrack-copy-blue-80") in steps
    assert ("online1", "notrack-copy-green-80") in steps
    copy = next(c for c in plan.changes if c.step == "notrack-copy-green-80")
    assert "192.168.44.138/32" in copy.apply[0]


def test_tcpcopy_gets_one_x_item_per_target_and_intercept_filters_both() -> None:
    inv = _inv()
    argv = tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths())
    assert argv[:2] == ["-x", "80-192.168.44.137:80,80-192.168.44.138:80"]
    assert "-s 192.168.44.136" in shlex.join(argv)
    iargv = intercept_argv(inv, EnginePaths())
    assert iargv[:2] == ["-F", "tcp and src port 80 and "
                               "(src host 192.168.44.137 or src host 192.168.44.138)"]


def test_datalink_needs_a_next_hop_for_every_target() -> None:
    inv = _inv()
    dl = inv.model_copy(update={"engine": inv.engine.model_copy(update={"datalink": True})})
    paths = EnginePaths(output_device="eth0", next_hop_macs={
        "192.168.44.137": "02:00:00:00:00:01", "192.168.44.138": "02:00:00:00:00:02"})
    argv = tcpcopy_argv(dl, dl.hosts.online[0], paths)
    assert argv[1] == ("80-192.168.44.137:80@02:00:00:00:00:01,"
                       "80-192.168.44.138:80@02:00:00:00:00:02")


def test_preflight_findings_name_each_target() -> None:
    inv = _inv()
    facts = healthy(inv)
    assert [f for f in run_checks(inv, facts, operator()) if f.blocks] == []
    facts["green"] = dataclasses.replace(facts["green"], route_gets={})
    online = facts["online1"]
    facts["online1"] = dataclasses.replace(online, tcp={**online.tcp, "192.168.44.138:80": False})
    found = {(f.id, f.host) for f in run_checks(inv, facts, operator())}
    assert ("facts.unknown", "green") in found
    assert ("service.unreachable", "online1") in found
    msg = [f.message for f in run_checks(inv, facts, operator())
           if f.id == "service.unreachable"]
    assert msg == ["cannot connect to the target service 192.168.44.138:80 from here"]


# -- up and down over simulated hosts ---------------------------------------------------------
@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_up_then_down_touches_both_targets(env: Path) -> None:
    fakes: dict[str, FakeTransport] = {}

    def factory(spec: Any) -> FakeTransport:
        return fakes.setdefault(spec.name, simulated_host(spec.name))

    inv = _inv()
    report = ops.up(inv, ops.UpOptions(factory=factory, fresh_factory=lambda s: simulated_host(
        s.name), operator_facts=OperatorFacts()))
    assert report.ok
    for name in ("blue", "green"):
        added = [c for c in fakes[name].commands if c[:3] == ("ip", "route", "add")]
        assert added == [("ip", "route", "add", "192.168.50.0/24", "via", "192.168.44.136",
                          "proto", "252")]
        journal = load_local("staging-ab", name)
        assert journal is not None and [e.step for e in journal.entries] == [
            "route-192.168.50.0/24"]
    (launch,) = [c for c in fakes["online1"].commands if "detach" in c]
    assert "80-192.168.44.137:80,80-192.168.44.138:80" in launch
    status = ops_down.status(inv, factory=factory)
    assert {h.host: h.role for h in status.hosts} == {
        "online1": "online", "blue": "target (baseline)", "green": "target (candidate)",
        "assistant": "assistant"}
    assert all(h.journal_state == "up" for h in status.hosts)
    down = ops_down.down(inv, factory=factory)
    assert down.ok, [(h.host, h.error, h.leftovers) for h in down.hosts]
    assert {h.host for h in down.hosts} >= {"blue", "green"}
    for name in ("blue", "green"):
        assert ("ip", "route", "del", "192.168.50.0/24", "via", "192.168.44.136", "proto",
                "252") in fakes[name].commands
        journal = load_local("staging-ab", name)
        assert journal is not None and journal.state == "down"


def test_saved_plan_with_two_targets_round_trips_and_applies(env: Path) -> None:
    from labctl.up import saved_plan

    fakes: dict[str, FakeTransport] = {}

    def factory(spec: Any) -> FakeTransport:
        return fakes.setdefault(spec.name, simulated_host(spec.name))

    opts = ops.UpOptions(factory=factory, fresh_factory=lambda s: simulated_host(s.name),
                         operator_facts=OperatorFacts())
    report = ops.plan(_inv(), opts)
    assert report.plan is not None and not report.refused
    plan = report.plan
    assert [c.host for c in plan.changes] == ["blue", "green", *["assistant"] * 4, "online1"]
    path = str(env / "ab-plan.json")
    saved_plan.save(path, plan, str(AB), AB.read_text(), fix=False)
    saved = saved_plan.load(path)
    assert saved_plan.differences(saved, plan.lab, AB.read_text(), plan) == []
    tcpcopy = saved.changes[-1]["daemon"]["args"]
    assert "80-192.168.44.137:80,80-192.168.44.138:80" in tcpcopy
    up = ops.up(_inv(), ops.UpOptions(factory=factory, fresh_factory=lambda s: simulated_host(
        s.name), operator_facts=OperatorFacts(), saved_plan=saved,
        inventory_text=AB.read_text()))
    assert up.ok and not up.stale
    for name in ("blue", "green"):          # each guarded route gets its own dead-man
        assert any(c[0] == "python3" and "rollback" in c
                   for c in fakes[name].commands), name
    assert not any("rollback" in c for c in fakes["online1"].commands)


def test_diagnose_picks_one_target() -> None:
    from labctl.errors import UsageError
    from labctl.verify.diagnose import pick_target

    inv = _inv()
    assert pick_target(inv, None).name == "blue"
    assert pick_target(inv, "green").name == "green"
    with pytest.raises(UsageError, match="--target pink: no such target"):
        pick_target(inv, "pink")
