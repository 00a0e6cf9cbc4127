"""The kernel family (labctl.up.checks.kernel): ip_forward on the assistant, conntrack room,
rp_filter on the target (and their --fix changes)."""

from __future__ import annotations

import pytest

from labctl.facts.proc import Conntrack, ProcValues
from labctl.model import ChangeKind, Severity
from labctl.up.checks import fix_changes, run_checks
from tests.unit.checks.fired import ids
from tests.unit.checks_facts import (
    healthy,
    inventory,
    operator,
    proc_of,
    with_host,
)


def test_assistant_ip_forward_and_its_fix() -> None:
    inv = inventory()
    base = healthy(inv)
    proc = proc_of(base, "assistant", ip_forward=1)
    facts = with_host(base, "assistant", proc=proc)
    found = run_checks(inv, facts, operator())
    hit = [f for f in found if f.id == "assistant.ip_forward"]
    ids(hit)
    assert hit[0].severity is Severity.ERROR and not hit[0].refusal and "--fix" in hit[0].hint
    fixes = fix_changes(inv, facts, found)
    assert [c.apply for c in fixes] == [(("sysctl", "-w", "net.ipv4.ip_forward=0"),)]
    assert fixes[0].undo == (("sysctl", "-w", "net.ipv4.ip_forward=1"),)
    assert fixes[0].kind is ChangeKind.SYSCTL and fixes[0].host == "assistant"


@pytest.mark.parametrize(
    ("ct", "expected", "severity"),
    [
        (Conntrack(False), "conntrack.absent", Severity.INFO),
        (Conntrack(True, 900, 1000), "conntrack.usage", Severity.ERROR),
        (Conntrack(True, 100, 12000), "conntrack.headroom", Severity.WARN),
    ],
)
def test_conntrack(ct: Conntrack, expected: str, severity: Severity) -> None:
    inv = inventory()
    base = healthy(inv)
    facts = with_host(base, "online1", proc=proc_of(base, "online1", conntrack=ct))
    found = [f for f in run_checks(inv, facts, operator()) if f.host == "online1"]
    ids(found)
    assert [(f.id, f.severity) for f in found] == [(expected, severity)]
    if expected != "conntrack.absent":
        fixes = fix_changes(inv, facts, found)
        assert fixes and all(c.kind is ChangeKind.IPTABLES for c in fixes)
        assert any("NOTRACK" in c.apply[0] for c in fixes)


def test_conntrack_not_checked_on_assistant() -> None:
    inv = inventory()
    base = healthy(inv)
    proc = proc_of(base, "assistant", conntrack=Conntrack(True, 999, 1000))
    assert not ids(run_checks(inv, with_host(base, "assistant", proc=proc), operator()))


def test_rp_filter_on_target_and_fix() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "target",
                      proc=ProcValues(0, Conntrack(True, 1, 100000),
                                      {"all": 1, "default": 1, "eth0": 0}))
    found = run_checks(inv, facts, operator())
    assert "target.rp_filter" in ids(found)
    fixes = fix_changes(inv, facts, found)
    assert [c.apply[0][2] for c in fixes] == ["net.ipv4.conf.all.rp_filter=0"]
