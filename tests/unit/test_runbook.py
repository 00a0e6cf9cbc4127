"""Runbook validation: good runbooks load, bad ones fail with file:line, the field and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labctl.drill.runbook import (
    FaultStep,
    RunbookError,
    TrafficStep,
    VerifyStep,
    WaitStep,
    load_runbook,
    parse_runbook,
)
from labctl.errors import ExitCode

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runbooks"
RUNBOOKS = Path(__file__).resolve().parent.parent.parent / "runbooks"


def test_good_runbook_loads_frozen_with_shorthands() -> None:
    rb = load_runbook(FIXTURES / "good-lab.yaml")
    assert rb.name == "good-lab"
    assert rb.lab is not None and rb.lab.name == "good" and rb.lab.topology == "two-server"
    assert rb.engine.as_update() == {"sample_percent": 50, "multiplier": 2}
    kinds = [s.step for s in rb.steps]
    assert kinds == ["up", "traffic", "wait", "fault", "fault", "verify", "down"]
    traffic, wait, drop, end = rb.steps[1], rb.steps[2], rb.steps[3], rb.steps[4]
    assert isinstance(traffic, TrafficStep) and traffic.post_sizes == [0, "64k"]
    assert isinstance(wait, WaitStep) and wait.seconds == 1
    assert isinstance(drop, FaultStep) and drop.kind == "drop" and drop.percent == 5
    assert isinstance(end, FaultStep) and end.kind == "end-drop"
    verify = rb.steps[5]
    assert isinstance(verify, VerifyStep) and verify.attribution == {"path": 0.5}
    with pytest.raises(ValidationError):
        rb.name = "other"


@pytest.mark.parametrize("name", ["smoke", "amplify", "intercept-outage", "staging-release",
                                  "ab-compare", "staging-ab-compare"])
def test_shipped_runbooks_validate(name: str) -> None:
    rb = load_runbook(RUNBOOKS / f"{name}.yaml")
    assert rb.name == name
    assert rb.steps[0].step == "up" and rb.steps[-1].step == "down"


def test_amplify_expects_ratio_one() -> None:
    rb = load_runbook(RUNBOOKS / "amplify.yaml")
    assert rb.engine.sample_percent == 50 and rb.engine.multiplier == 2
    verify = next(s for s in rb.steps if isinstance(s, VerifyStep))
    assert verify.min_ratio is not None and verify.max_ratio is not None
    assert verify.min_ratio < 1.0 < verify.max_ratio


@pytest.mark.parametrize(("fixture", "line", "expected"), [
    ("bad-step-kind.yaml", 5, ["steps[1]", "unknown step 'explode'", "traffic"]),
    ("bad-traffic-mode.yaml", 7, ["steps[1].traffic.mode", "sometimes", "keepalive"]),
    ("bad-unknown-key.yaml", 5, ["steps[1].verify.min_ration", "unknown key"]),
    ("bad-drop-no-percent.yaml", 5, ["steps[1].fault", "needs percent"]),
    ("bad-traffic-real-inventory.yaml", 5, ["steps[1].traffic", "local lab"]),
    ("bad-duplicate-key.yaml", 2, ["name", "duplicate key", "line 1"]),
    ("bad-lab-name.yaml", 3, ["inventory.lab.name", "lowercase letter"]),
    ("bad-attribution.yaml", 5, ["steps[1].verify.attribution", "unknown bucket 'network'"]),
    ("bad-wait.yaml", 5, ["steps[1].wait", "either seconds or until"]),
    ("bad-yaml.yaml", 3, ["not valid YAML"]),
    ("bad-two-keys.yaml", 4, ["steps[0]", "one key per step"]),
])
def test_bad_runbooks_name_file_line_and_field(fixture: str, line: int,
                                               expected: list[str]) -> None:
    with pytest.raises(RunbookError) as info:
        load_runbook(FIXTURES / fixture)
    err = info.value
    assert err.exit_code == ExitCode.USAGE
    assert f"{FIXTURES / fixture}:{line}:" in err.message, err.message
    for text in expected:
        assert text in err.message, err.message
    assert "Traceback" not in err.render()


def test_missing_fields_are_listed() -> None:
    with pytest.raises(RunbookError) as info:
        parse_runbook("description: nothing else\n", source="rb.yaml")
    msg = info.value.message
    for field in ("name", "inventory", "steps"):
        assert f"rb.yaml:1: {field}: required field is missing" in msg, msg


def test_inventory_must_be_path_or_lab() -> None:
    with pytest.raises(RunbookError) as info:
        parse_runbook("name: x\ninventory: 3\nsteps: [up]\n", source="rb.yaml")
    assert "rb.yaml:2: inventory: expected an inventory file path" in info.value.message


def test_not_a_mapping_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="must be a YAML mapping"):
        parse_runbook("- up\n- down\n")
    with pytest.raises(RunbookError, match="cannot read runbook"):
        load_runbook(tmp_path / "absent.yaml")


def test_fault_parameters_belong_to_their_kind() -> None:
    text = "name: x\ninventory: {lab: {name: a}}\nsteps:\n  - up\n" \
           "  - fault: {kind: stop-intercept, percent: 5}\n"
    with pytest.raises(RunbookError, match=r"rb.yaml:5: steps\[1\].fault: percent and host"):
        parse_runbook(text, source="rb.yaml")


def test_stall_target_needs_the_lab() -> None:
    text = "name: x\ninventory: inv.yaml\nsteps:\n  - up\n  - fault: stall-target\n"
    with pytest.raises(RunbookError, match=r"rb.yaml:5: steps\[1\].fault.kind: stall-target "
                                           "works in the local lab only"):
        parse_runbook(text, source="rb.yaml")


def test_bad_post_size_is_named() -> None:
    text = "name: x\ninventory: {lab: {name: a}}\nsteps:\n  - traffic: {requests: 1, " \
           "post_sizes: [0, lots]}\n"
    with pytest.raises(RunbookError, match=r"steps\[0\].traffic.post_sizes.*'lots'"):
        parse_runbook(text, source="rb.yaml")
