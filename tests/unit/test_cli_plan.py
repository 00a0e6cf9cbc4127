"""`labctl plan` at fleet size (issue 12): 16 online hosts whose facts trip checks on every one
of them read as a few grouped entries in 80 columns; `--json` keeps every finding and adds the
groups; and `plan` exits 1 when `up` would be refused, 0 when it would go ahead.

The facts are constructed (tests.unit.checks_facts) and the checks are the real ones; only the
core `plan` call (connect + gather, which needs hosts) is replaced by one returning that report.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.cli import console, main
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.model import Finding, Plan, Severity
from labctl.up import run as core
from labctl.up.checks import run_checks
from tests.unit.checks_facts import ROOT, healthy, operator

STAGING = ROOT / "inventories" / "staging.yaml"
ONLINE1 = ("    - {name: online1, address: 192.168.44.128, port: 22, user: root, "
           "key: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts, sudo: false}\n")


def fleet_text() -> str:
    """staging.yaml with 16 online hosts and host keys unchecked (a warning per host)."""
    text = STAGING.read_text()
    assert ONLINE1 in text and "strict_host_key_checking: true" in text
    hosts = "".join(ONLINE1.replace("online1", f"online{i}")
                    .replace("192.168.44.128", f"192.168.44.{10 + i}") for i in range(1, 17))
    return (text.replace(ONLINE1, hosts)
            .replace("strict_host_key_checking: true", "strict_host_key_checking: false"))


def fleet_findings(inv: Inventory) -> list[Finding]:
    """Every online host cannot reach the target service (an error on each), plus an unchecked
    host key on each of the 18 hosts: 34 findings."""
    facts = healthy(inv)
    for spec in inv.hosts.online:
        hf = facts[spec.name]
        facts[spec.name] = dataclasses.replace(hf, tcp={k: False for k in hf.tcp})
    return run_checks(inv, facts, operator())


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text())
    inv = parse_inventory(path.read_text(), source=str(path))
    assert len(inv.hosts.online) == 16
    found = fleet_findings(inv)
    state: dict[str, Any] = {"path": path, "findings": found}

    def fake_plan(inventory: Inventory, opts: Any = None) -> core.UpReport:
        findings = state["findings"]
        strict = bool(opts and opts.strict)
        refused = bool(core.blocking(findings, False, strict=strict))
        return core.UpReport(inventory.lab, findings, None if refused else Plan(inv.lab, ()),
                             dry_run=True, refused=refused)

    monkeypatch.setattr(core, "plan", fake_plan)
    monkeypatch.setenv("COLUMNS", "80")
    console.out.cache_clear()      # the next console reads COLUMNS=80
    yield state
    console.out.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    got = capsys.readouterr()
    return int(exc.value.code or 0), got.out, got.err


def headlines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"(error|warn|info)\b", line)]


def test_sixteen_online_hosts_read_as_two_entries_in_80_columns(
        fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert len(fleet["findings"]) == 16 + 18
    code, out, err = run(capsys, "plan", str(fleet["path"]))
    assert code == 1, out + err
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert headlines(out) == [
        "error  service.unreachable  on online[1-16] (16 hosts)",
        "warn  ssh.host_key_unchecked  on assistant, online[1-16], target (18 hosts)"], out
    assert "preflight checks: 16 errors, 18 warnings" in out
    shown = " ".join(out.split())   # wrapped at 80 columns, never cut
    assert "cannot connect to the target service 192.168.44.137:80 from here" in shown, out
    for f in fleet["findings"]:
        assert f.message in shown and f.hint in shown, out
    # the refusal names each blocking check once, its hosts compact
    assert "`up` would be refused: preflight found 16 blocking problem(s): " \
           "service.unreachable@online[1-16]; nothing was changed" in " ".join(err.split()), err


def test_json_keeps_every_finding_and_adds_the_groups(
        fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", str(fleet["path"]), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["refused"] is True
    assert len(doc["findings"]) == 34
    assert {"id", "severity", "host", "message", "hint", "refusal"} <= set(doc["findings"][0])
    groups = {g["id"]: g for g in doc["finding_groups"]}
    assert set(groups) == {"service.unreachable", "ssh.host_key_unchecked"}
    unreachable = groups["service.unreachable"]
    assert unreachable["hosts"] == [f"online{i}" for i in range(1, 17)]
    assert unreachable["count"] == 16 and unreachable["severity"] == "error"


def test_plan_exits_0_when_up_would_go_ahead_and_1_with_strict_warnings(
        fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    fleet["findings"] = [f for f in fleet["findings"] if f.severity is not Severity.ERROR]
    code, out, err = run(capsys, "plan", str(fleet["path"]))
    assert code == 0, out + err
    assert "preflight checks: 18 warnings" in out
    code, out, err = run(capsys, "plan", str(fleet["path"]), "--strict")
    assert code == 1, out + err
    assert "ssh.host_key_unchecked@assistant,online[1-16],target;" in " ".join(err.split())
    fleet["findings"] = []
    code, out, err = run(capsys, "plan", str(fleet["path"]), "--strict")
    assert code == 0 and "preflight checks: no findings" in out, out + err
