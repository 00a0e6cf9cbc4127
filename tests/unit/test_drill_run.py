"""The drill run loop through a fake executor: step order, faults bookkept, cleanup always.

No monkeypatching: `run_drill` gets the context and a `FakeSteps` executor as arguments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.drill.context import Context
from labctl.drill.fake import FakeSteps
from labctl.drill.model import DrillResult
from labctl.drill.run import DrillOptions, run_drill
from labctl.drill.runbook import RunbookError, load_runbook, parse_runbook

RUNBOOKS = Path(__file__).resolve().parent.parent.parent / "runbooks"
OUTAGE = RUNBOOKS / "intercept-outage.yaml"
#: intercept-outage.yaml: what a clean run asks of the executor, in order.
OUTAGE_CALLS = ["prepare", "up", "traffic", "wait", "fault stop-intercept", "wait",
                "revert stop-intercept", "wait", "verify", "traffic", "verify", "down",
                "destroy lab", "close"]


def drill(fake: FakeSteps, path: Path = OUTAGE, keep: bool = False,
          text: str = "") -> tuple[DrillResult, Context, list[int]]:
    """Run the runbook at `path` (or `text`) through `fake`; (result, context, steps seen)."""
    rb = parse_runbook(text, "rb.yaml") if text else load_runbook(path)
    ctx = Context.for_runbook(rb, "h8zz")
    seen: list[int] = []
    opts = DrillOptions(keep=keep, on_step=lambda r: seen.append(r.index))
    result = run_drill(ctx, fake, text or path.read_text(), str(path), opts)
    return result, ctx, seen


def actions(result: DrillResult) -> list[tuple[str, bool]]:
    return [(c.action, c.ok) for c in result.cleanup]


def test_all_steps_ok_passes() -> None:
    fake = FakeSteps()
    result, ctx, seen = drill(fake)
    assert fake.calls == OUTAGE_CALLS
    assert result.passed and result.verdict == "PASSED" and result.lab == "h8zz"
    assert seen == list(range(1, 12))
    assert result.steps[3].details == {"fault": "fake stop-intercept"}
    assert result.steps[5].details == {"ended": "fake stop-intercept"}
    assert result.steps[10].details == {"reverted": []}
    assert result.cleanup[0].detail == "lab h8zz destroyed" and actions(result) == [
        ("destroy lab", True)]
    assert not ctx.up and not ctx.faults and ctx.lab is None


def test_unmet_expectation_fails_but_later_steps_run() -> None:
    fake = FakeSteps(unmet={"verify#1"})
    result, _, _ = drill(fake)
    assert fake.calls == OUTAGE_CALLS
    assert not result.passed and result.verdict == "FAILED"
    assert [s.status for s in result.steps].count("ok") == 10
    assert result.steps[7].status == "failed"
    assert "copy ratio 0.5 (min 0.99)" in result.reasons[0]


def test_step_error_stops_the_rest_and_cleans_up() -> None:
    fake = FakeSteps(fail={"fault stop-intercept"})
    result, _, seen = drill(fake)
    assert [s.status for s in result.steps][:5] == ["ok", "ok", "ok", "failed", "skipped"]
    assert result.steps[3].error == "boom (hint: look here)"
    assert seen == [1, 2, 3, 4]
    # the fault never became active: cleanup takes the setup down and destroys the lab
    assert fake.calls[-4:] == ["fault stop-intercept", "teardown", "destroy lab", "close"]
    assert actions(result) == [("down", True), ("destroy lab", True)]
    assert result.verdict == "FAILED"


def test_active_fault_is_reverted_first_at_cleanup() -> None:
    fake = FakeSteps(fail={"wait#2"})  # step 5, while intercept is stopped
    result, ctx, _ = drill(fake)
    assert fake.calls[-5:] == ["wait", "revert stop-intercept", "teardown", "destroy lab",
                               "close"]
    assert actions(result) == [("revert stop-intercept", True), ("down", True),
                               ("destroy lab", True)]
    assert not ctx.faults


def test_failed_cleanup_action_does_not_stop_the_others() -> None:
    fake = FakeSteps(fail={"wait#2", "revert stop-intercept"})
    result, _, _ = drill(fake)
    assert actions(result) == [("revert stop-intercept", False), ("down", True),
                               ("destroy lab", True)]
    assert "cleanup revert stop-intercept: boom" in result.reasons
    assert fake.calls[-1] == "close"


def test_keep_leaves_the_setup_but_reverts_faults() -> None:
    fake = FakeSteps(fail={"wait#2"})
    result, ctx, _ = drill(fake, keep=True)
    assert actions(result) == [("revert stop-intercept", True)]
    assert result.kept and ctx.up and ctx.lab is not None


def test_ctrl_c_still_cleans_up() -> None:
    fake = FakeSteps(interrupt={"wait#1"})
    result, _, _ = drill(fake)
    assert result.interrupted and result.verdict == "INTERRUPTED"
    assert result.steps[2].status == "failed" and result.steps[2].error == "interrupted"
    assert actions(result) == [("down", True), ("destroy lab", True)]
    assert fake.calls[-1] == "close"
    assert result.finished_at >= result.started_at
    assert result.reasons[0] == "interrupted (Ctrl-C); cleanup ran"


def test_down_step_reverts_active_faults_first() -> None:
    text = "name: x\ninventory: {lab: {name: a}}\nsteps:\n  - up\n" \
           "  - fault: {kind: drop, percent: 10}\n  - fault: stop-intercept\n  - down\n"
    fake = FakeSteps()
    result, _, _ = drill(fake, text=text)
    assert fake.calls == ["prepare", "up", "fault drop", "fault stop-intercept",
                          "revert stop-intercept", "revert drop", "down", "destroy lab",
                          "close"]
    assert result.steps[3].details["reverted"] == ["stop-intercept", "drop"]
    assert result.passed


def test_prepare_error_is_the_drill_error() -> None:
    fake = FakeSteps(fail={"prepare"})
    result, _, seen = drill(fake)
    assert result.error == "boom" and result.reasons[0] == "boom"
    assert seen == [] and all(s.status == "skipped" for s in result.steps)
    assert fake.calls == ["prepare", "close"] and result.cleanup == []
    assert result.verdict == "FAILED"


def test_impossible_order_is_refused_before_anything_runs() -> None:
    text = "name: x\ninventory: {lab: {name: a}}\nsteps:\n  - verify\n  - up\n"
    fake = FakeSteps()
    with pytest.raises(RunbookError, match="needs the copy setup up"):
        drill(fake, text=text)
    assert fake.calls == []


def test_real_inventory_drill_has_no_lab_to_destroy() -> None:
    text = "name: x\ninventory: inv.yaml\nsteps:\n  - up\n  - fault: {kind: drop, " \
           "percent: 5}\n  - wait: 1\n"
    fake = FakeSteps(fail={"wait"})
    result, ctx, _ = drill(fake, text=text)
    assert ctx.lab is None
    assert actions(result) == [("revert drop", True), ("down", True)]


@pytest.mark.parametrize("name", ["smoke", "amplify", "target-faults"])
def test_shipped_lab_runbooks_run_clean_on_the_fake(name: str) -> None:
    fake = FakeSteps()
    result, ctx, _ = drill(fake, RUNBOOKS / f"{name}.yaml")
    assert result.passed, result.reasons
    assert fake.calls[-2:] == ["destroy lab", "close"] and not ctx.faults
