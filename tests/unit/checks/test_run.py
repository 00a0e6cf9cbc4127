"""run_checks as a whole: a healthy lab (three- and two-server) has no finding above INFO; what
blocks `up` (errors, --force, --strict)."""

from __future__ import annotations

import pytest

from labctl.model import Finding, Severity
from labctl.up.checks import blocking, run_checks
from tests.unit.checks_facts import (
    healthy,
    inventory,
    operator,
    two_server,
)


@pytest.mark.parametrize("name", ["staging", "local"])
def test_healthy_lab_has_no_errors_or_warnings(name: str) -> None:
    inv = inventory(name)
    findings = run_checks(inv, healthy(inv), operator())
    assert [f for f in findings if f.severity is not Severity.INFO] == []


def test_two_server_healthy() -> None:
    inv = two_server()
    assert [f for f in run_checks(inv, healthy(inv), operator())
            if f.severity is not Severity.INFO] == []


def test_blocking_and_force() -> None:
    warn = Finding("x", Severity.WARN, "h", "m")
    err = Finding("y", Severity.ERROR, "h", "m")
    ref = Finding("z", Severity.ERROR, "h", "m", refusal=True)
    info = Finding("i", Severity.INFO, "h", "m")
    assert blocking([warn, err, ref, info]) == [err, ref]
    assert blocking([warn, err, ref, info], force=True) == [ref]
    # --strict: warnings block too (e.g. target.not_listening), never the notes
    assert blocking([warn, err, ref, info], strict=True) == [warn, err, ref]
