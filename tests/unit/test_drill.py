"""Drill planning, expectations, cleanup order and the pure fault argvs (no I/O).

The run loop with a fake executor is tests/unit/test_drill_run.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.drill.faults import drop_argvs, drop_chain, route_argvs
from labctl.drill.model import apply_overrides, check_verify, cleanup_actions, plan_drill
from labctl.drill.runbook import RunbookError, VerifyStep, load_runbook, parse_runbook
from tests.unit.test_drill_fakes import ledger, tcpcopy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runbooks"
RUNBOOKS = Path(__file__).resolve().parent.parent.parent / "runbooks"


# ---------------------------------------------------------------- planning


def test_plan_lists_steps_in_order_with_titles() -> None:
    planned = plan_drill(load_runbook(RUNBOOKS / "intercept-outage.yaml"))
    assert [p.index for p in planned] == list(range(1, len(planned) + 1))
    assert [p.kind for p in planned][:4] == ["up", "traffic", "wait", "fault"]
    assert planned[1].title.endswith("(background)")
    assert planned[3].title == "fault: stop-intercept"


@pytest.mark.parametrize(("fixture", "expected"), [
    ("order-verify-before-up.yaml", "step 1 (verify (expect pass)): needs the copy setup up"),
    ("order-end-without-start.yaml", "start-intercept without an active stop-intercept"),
    ("order-wait-no-background.yaml", "no background traffic to wait for"),
])
def test_plan_refuses_impossible_orders(fixture: str, expected: str) -> None:
    with pytest.raises(RunbookError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        plan_drill(load_runbook(FIXTURES / fixture), fixture)


def test_plan_refuses_double_fault_and_double_up() -> None:
    base = "name: x\ninventory: {lab: {name: a}}\nsteps:\n"
    twice = base + "  - up\n  - fault: stop-intercept\n  - fault: stop-intercept\n"
    with pytest.raises(RunbookError, match="already active"):
        plan_drill(parse_runbook(twice))
    with pytest.raises(RunbookError, match="already up"):
        plan_drill(parse_runbook(base + "  - up\n  - up\n"))
    # down ends the faults: a new up may fault again
    again = base + "  - up\n  - fault: stop-intercept\n  - down\n  - up\n" \
                   "  - fault: stop-intercept\n"
    assert len(plan_drill(parse_runbook(again))) == 5


def test_cleanup_order_reverts_newest_first_then_down_then_lab() -> None:
    assert cleanup_actions(["drop", "stop-intercept"], True, True, True, False) == [
        "revert stop-intercept", "revert drop", "stop background traffic", "down",
        "destroy lab"]
    assert cleanup_actions([], False, False, True, False) == ["destroy lab"]
    assert cleanup_actions(["drop"], False, True, True, True) == ["revert drop"]


# ---------------------------------------------------------------- expectations


def test_expect_pass_met_and_ratio_bounds() -> None:
    report = ledger(100, 100)
    checks = check_verify(VerifyStep(expect="pass", min_ratio=0.99, max_ratio=1.01), report)
    assert [c.name for c in checks] == ["verdict", "min_ratio", "max_ratio"]
    assert all(c.ok for c in checks), checks


def test_expect_pass_not_met_on_loss() -> None:
    checks = check_verify(VerifyStep(expect="pass", min_ratio=0.99), ledger(100, 80))
    assert not checks[0].ok and "ledger verdict FAIL (expected pass)" in checks[0].detail
    assert not checks[1].ok and "0.8000" in checks[1].detail


def test_expect_fail_with_attribution_share() -> None:
    report = ledger(100, 60, (tcpcopy(requests_sent=60, sessions_no_synack=40),))
    assert report.attribution.missing == 40
    ok = check_verify(VerifyStep(expect="fail", attribution={"session": 0.9}), report)
    assert all(c.ok for c in ok), ok
    wrong = check_verify(VerifyStep(expect="fail", attribution={"path": 0.5}), report)
    assert not wrong[1].ok and "path explains 0/40" in wrong[1].detail


def test_attribution_without_loss_is_not_met() -> None:
    checks = check_verify(VerifyStep(expect="pass", attribution={"path": 0.1}), ledger(10, 10))
    assert not checks[1].ok and "no missing copies" in checks[1].detail


# ---------------------------------------------------------------- pure helpers


def test_engine_overrides_replace_only_named_fields() -> None:
    text = "lab: a\nengine: {sample_percent: 100, multiplier: 1, memory_mb: 64}\n"
    out = yaml.safe_load(apply_overrides(text, {"sample_percent": 50, "multiplier": 2}))
    assert out["engine"] == {"sample_percent": 50, "multiplier": 2, "memory_mb": 64}
    assert apply_overrides(text, {}) == text


def test_drop_fault_argvs_are_tagged_and_exactly_undone() -> None:
    apply, revert = drop_argvs("lab1", 12.5, [("10.77.1.20", 80)])
    chain = drop_chain("lab1")
    assert chain == "LABCTL-D-lab1" and len(drop_chain("a" * 16)) <= 28
    assert apply[0] == ["iptables", "-w", "-N", chain]
    assert "0.1250" in apply[1] and apply[1][-2:] == ["-j", "DROP"]
    jump = apply[2][3:]
    assert apply[2][:3] == ["iptables", "-w", "-I"] and "labctl:lab1:drill-drop" in jump
    assert revert[0] == ["iptables", "-w", "-D", *jump]
    assert revert[-2:] == [["iptables", "-w", "-F", chain], ["iptables", "-w", "-X", chain]]


def test_route_argvs_restore_gateway_device_and_proto() -> None:
    delete, restore = route_argvs({"dst": "10.79.1.0/24", "gateway": "10.77.1.30",
                                   "dev": "eth0", "protocol": "252"})
    assert delete == ["ip", "-4", "route", "del", "10.79.1.0/24", "via", "10.77.1.30",
                      "dev", "eth0"]
    assert restore[-2:] == ["proto", "252"] and restore[3] == "replace"


def test_intercept_outage_loss_is_attributed_to_session() -> None:
    """tcpcopy counts SYNs it could not turn into sessions while no intercept was connected
    (`sessions_no_intercept`); the ledger must put that loss in `session`, not `unexplained`."""
    report = ledger(100, 57, (tcpcopy(requests_sent=57, sessions_no_intercept=43),))
    checks = check_verify(VerifyStep(expect="fail", attribution={"session": 0.5}), report)
    assert all(c.ok for c in checks), checks
    assert report.attribution.unexplained == 0
    assert "no intercept connected=43" in report.attribution.buckets[0].evidence


def test_sessions_held_past_the_hold_timeout_are_attributed_to_session() -> None:
    """An outage longer than tcpcopy's --hold-timeout gives its held sessions up
    (`sessions_hold_expired`): the ledger names them in `session`, not `unexplained`."""
    report = ledger(100, 70, (tcpcopy(requests_sent=70, sessions_hold_expired=30),))
    assert report.attribution.unexplained == 0
    assert "held past --hold-timeout=30" in report.attribution.buckets[0].evidence


def test_copies_lost_to_a_stalled_target_are_attributed_to_the_target() -> None:
    """Connections tcpcopy did not copy, and sessions it shed, while the target answered
    nothing (`target_stalled`, `sessions_stall_shed`): the target's silence, not the copy's."""
    report = ledger(100, 60, (tcpcopy(requests_sent=60, target_stalled=30,
                                      sessions_stall_shed=10),))
    assert report.attribution.unexplained == 0
    bucket = report.attribution.buckets[0]
    assert bucket.name == "target" and "the target stopped answering" in bucket.evidence
