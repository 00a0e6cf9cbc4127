"""The drill's `compare` step: runbook syntax, ordering, the run loop through the fake
executor, judging a real comparison, and a live step refusing an inventory without roles
before it touches anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.compare.judge import build
from labctl.compare.types import CompareInput, CompareReport, Thresholds
from labctl.drill.context import Context
from labctl.drill.fake import FakeSteps
from labctl.drill.model import StepResult, check_compare, compare_details
from labctl.drill.run import run_drill
from labctl.drill.runbook import CompareStep, RunbookError, load_runbook, parse_runbook
from labctl.drill.steps import LiveSteps
from labctl.errors import UsageError
from labctl.inventory.load import parse_inventory
from tests.unit.compare_logs import CLIENT_POOL, Change, records, synth
from tests.unit.test_ledger_fetch import INVENTORY

RUNBOOKS = Path(__file__).resolve().parent.parent.parent / "runbooks"

RUNBOOK = """name: ab
inventory: inventories/staging-ab.yaml
steps:
  - up
  - compare
  - compare: {expect: regression, settle: 0}
  - verify
  - down
"""


def report(seed: int, changes: dict[str, Change] | None = None,
           requests: int = 1200) -> CompareReport:
    logs = synth(seed, requests=requests, changes=changes)
    return build(CompareInput(records(logs.online), records(logs.baseline),
                              records(logs.candidate), allowed_sources=[CLIENT_POOL]),
                 Thresholds(bootstrap=200))


def test_compare_steps_parse_with_defaults() -> None:
    rb = parse_runbook(RUNBOOK, "rb.yaml")
    first, second = rb.steps[1], rb.steps[2]
    assert isinstance(first, CompareStep) and first.expect == "pass" and first.settle == 2.0
    assert isinstance(second, CompareStep) and second.expect == "regression"
    assert second.title() == "compare (expect regression)"


def test_a_lab_with_two_targets_for_compare() -> None:
    rb = load_runbook(RUNBOOKS / "ab-compare.yaml")
    assert rb.lab is not None and rb.lab.targets == 2
    assert [s.step for s in rb.steps].count("compare") == 2
    assert parse_runbook("name: x\ninventory: {lab: {name: ab}}\nsteps: [up, down]\n"
                         ).lab.targets == 1  # type: ignore[union-attr]
    with pytest.raises(RunbookError, match=r"rb.yaml:2: inventory.lab: targets: 2 needs "
                                           r"topology: three-server"):
        parse_runbook("name: x\ninventory: {lab: {name: ab, topology: two-server, targets: 2}}"
                      "\nsteps: [up, down]\n", "rb.yaml")


def test_a_bad_expectation_names_line_and_field() -> None:
    with pytest.raises(RunbookError) as exc:
        parse_runbook(RUNBOOK.replace("expect: regression", "expect: maybe"), "rb.yaml")
    assert "rb.yaml:6: steps[2].compare.expect" in exc.value.message


def test_compare_before_up_is_refused() -> None:
    text = "name: ab\ninventory: x.yaml\nsteps:\n  - compare\n  - up\n  - down\n"
    with pytest.raises(RunbookError, match=r"step 1 \(compare \(expect pass\)\): needs the "
                                           r"copy setup up"):
        run_drill(Context.for_runbook(parse_runbook(text, "rb.yaml")), FakeSteps(), text,
                  "rb.yaml")


def test_the_run_loop_hands_compare_steps_to_the_executor() -> None:
    rb = parse_runbook(RUNBOOK, "rb.yaml")
    fake = FakeSteps(unmet={"compare#2"})
    result = run_drill(Context.for_runbook(rb), fake, RUNBOOK, "rb.yaml")
    assert fake.calls == ["prepare", "up", "compare", "compare", "verify", "down", "close"]
    assert [s.status for s in result.steps] == ["ok", "ok", "failed", "ok", "ok"]
    assert "compare verdict PASS (expected REGRESSION)" in result.reasons[0]


def test_judging_a_comparison() -> None:
    fine, bad = report(1), report(2, {"users": Change(slower_ms=200)})
    assert [c.ok for c in check_compare(CompareStep(), fine)] == [True]
    checks = check_compare(CompareStep(), bad)
    assert not checks[0].ok and "REGRESSION (expected PASS)" in checks[0].detail
    assert "GET /api/users/{id}" in checks[0].detail
    assert check_compare(CompareStep(expect="regression"), bad)[0].ok
    nothing = report(3, requests=40)
    assert nothing.verdict.inconclusive
    assert not any(check_compare(CompareStep(expect=e), nothing)[0].ok  # type: ignore[arg-type]
                   for e in ("pass", "regression"))
    details = compare_details(bad)
    assert details["compare verdict"] == "REGRESSION" and len(details["flags"]) == 1


def test_live_compare_refuses_an_inventory_without_roles_before_touching_hosts() -> None:
    rb = parse_runbook(RUNBOOK, "rb.yaml")
    ctx = Context.for_runbook(rb)
    ctx.inv = parse_inventory(INVENTORY)  # one plain target
    with pytest.raises(UsageError, match="one baseline and one candidate"):
        LiveSteps().compare(ctx, CompareStep(), StepResult(2, "compare", "compare"))
    assert ctx.pool is None  # no connection was opened
