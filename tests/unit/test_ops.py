"""labctl.up.run: `plan` and a refused `up` run only read-only commands (FakeTransport proves it:
it raises on anything unscripted, and only fact-reading commands are scripted)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import PreflightRefused
from labctl.facts import OperatorFacts
from labctl.hosts.journal import LabRecord, save_record
from labctl.inventory.load import load_inventory, parse_inventory
from labctl.model import Finding, Severity
from labctl.transport import FakeTransport
from labctl.up import run as ops
from labctl.up.hooks import Hooks
from tests.unit.test_facts_gather import scripted

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, FakeTransport]:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    return {}


def _opts(fakes: dict[str, FakeTransport], **kw: Any) -> ops.UpOptions:
    """Options with these fakes and recorded operator facts (no address of this machine)."""
    kw.setdefault("operator_facts", OperatorFacts())
    kw.setdefault("factory", _factory(fakes))
    return ops.UpOptions(**kw)


def _factory(fakes: dict[str, FakeTransport]) -> Any:
    def make(spec: Any) -> FakeTransport:
        fakes[spec.name] = fakes.get(spec.name) or scripted(spec.name)
        return fakes[spec.name]
    return make


def _no_writes(fakes: dict[str, FakeTransport]) -> None:
    for fake in fakes.values():
        assert not [c for c in fake.calls if c.argv[0] in ("<put>", "<get>")]
        for argv in fake.commands:
            assert argv[0] in {"python3", "id", "test", "printenv", "grep", "ip", "iptables",
                               "iptables-save", "ss", "pypy3", "nproc", "stat"}, argv
            assert not {"add", "del", "-A", "-I", "-N", "-D", "-w"} & set(argv[1:3]), argv


def test_plan_touches_nothing(fakes: dict[str, FakeTransport]) -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    report = ops.plan(inv, _opts(fakes))
    assert report.plan is not None and report.plan.changes
    assert any(c.guarded for c in report.plan.changes)
    assert set(fakes) == {h.name for h in inv.all_hosts()}
    _no_writes(fakes)


def test_up_refused_when_client_net_contains_operator(fakes: dict[str, FakeTransport]) -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    inside = next(iter(inv.clients.networks[0].hosts()))
    operator = OperatorFacts((ipaddress.IPv4Address(inside),))
    report = ops.up(inv, _opts(fakes, force=True, operator_facts=operator))
    assert report.refused and not report.steps
    assert any(f.refusal and f.id == "route.operator" for f in report.findings)
    _no_writes(fakes)
    err = ops.refused_error(report, force=True)
    assert "route.operator" in err.message and "nothing was changed" in err.message


def _f(fid: str, sev: Severity = Severity.ERROR, refusal: bool = False) -> Finding:
    return Finding(fid, sev, "h", "m", refusal=refusal)


def test_blocking_rules() -> None:
    err, ref, warn = _f("x.err"), _f("route.operator", refusal=True), _f("w", Severity.WARN)
    fixable = _f("assistant.ip_forward")
    found = [err, ref, warn, fixable]
    assert ops.blocking(found, force=False) == [err, ref, fixable]
    assert ops.blocking(found, force=True) == [ref]  # --force never skips a refusal
    assert ops.blocking(found, force=False, fix=True) == [err, ref]
    assert ops.blocking(found, force=True, hooks=Hooks(allow_ssh_cut=True)) == []


def test_resolve_without_inventory_needs_exactly_one_lab(
    fakes: dict[str, FakeTransport]
) -> None:
    with pytest.raises(ops.UsageError, match="0 labs are known"):
        ops.resolve(None)
    text = (ROOT / "inventories/staging.yaml").read_text()
    save_record(LabRecord("staging", "/x/staging.yaml", text, ["target"]))
    assert ops.resolve(None).inventory.lab == load_inventory(
        ROOT / "inventories/staging.yaml").lab


def test_forced_up_fails_before_any_change_when_daemon_args_cannot_be_built(
    fakes: dict[str, FakeTransport], tmp_path: Path
) -> None:
    """engine.datalink with no next-hop MAC in the facts: `--force` skips the finding, but the
    engine arguments are built before the first change, so nothing is applied."""
    text = (ROOT / "inventories/staging.yaml").read_text().replace("datalink: false",
                                                                   "datalink: true")
    inv = parse_inventory(text, source="staging-datalink.yaml")

    def factory(spec: Any) -> FakeTransport:
        fake = _factory(fakes)(spec)
        fake.on(["ip", "-4", "-j", "neigh", "show"], stdout="[]")   # no neighbour entries
        return fake

    report = ops.plan(inv, _opts(fakes, factory=factory))
    assert any(f.id == "datalink.mac_unknown" for f in report.findings), report.findings
    with pytest.raises(PreflightRefused) as exc:
        ops.up(inv, _opts(fakes, factory=factory, force=True))
    assert "engine.datalink" in exc.value.message and "nothing was changed" in exc.value.message
    assert exc.value.host in {h.name for h in inv.hosts.online}
    _no_writes(fakes)
