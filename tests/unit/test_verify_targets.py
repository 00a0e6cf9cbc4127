"""verify with several targets: a ledger per target (online vs that target) from log fixtures
fetched over scripted hosts, each with its own verdict; the overall verdict passes only if every
target's does; `--target` compares one; the JSON documents for one and several targets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from labctl.cli.render import verify as rv
from labctl.errors import UsageError
from labctl.inventory.load import parse_inventory
from labctl.transport.fake import FakeTransport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as V
from labctl.verify import ledger as L
from labctl.verify import targets as vt
from labctl.verify.logparse import LogRecord
from tests.unit.test_ledger_fanin import BASE, line
from tests.unit.test_ledger_fetch import Disk

FMT = "labctl"
INVENTORY = """
lab: ab
hosts:
  online: [{name: on1, address: 10.77.1.10}]
  targets:
    - {name: blue, address: 10.77.1.20, role: baseline}
    - {name: green, address: 10.77.1.21, role: candidate}
  assistant: {name: assistant, address: 10.77.1.30}
services: [{port: 80, target_port: 80}]
clients: {pool: [10.79.1.x], networks: [10.79.1.0/24], real_networks: [10.78.1.0/24]}
logs:
  online: {path: /log/online.log, format: labctl}
  target: {path: /log/target.log, format: labctl}
state_dir: /state
"""
N = 40


def _line(t: float, addr: str, uri: str) -> str:
    return line(t, addr, "GET", uri, None, 80).rsplit(" ", 1)[0] + "\n"


def _hosts(green_lost: int) -> dict[str, FakeTransport]:
    """on1 logs N requests; blue logs a copy of each, green all but the last `green_lost`."""
    fakes = {n: FakeTransport(n) for n in ("on1", "blue", "green", "assistant")}
    disks = {n: Disk(f) for n, f in fakes.items()}
    for f in fakes.values():
        f.on(["cat", *V.CONNTRACK], stdout="10\n1000\n")
        f.on_regex(r"^cat /state/ab/\w+/journal.json$", exit_code=1, stderr="No such file")
    reqs = [(BASE + i, f"/r{i}") for i in range(N)]
    disks["on1"].files["/log/online.log"] = (
        "".join(_line(t, "10.78.1.10", u) for t, u in reqs).encode(), 1)
    disks["blue"].files["/log/target.log"] = (
        "".join(_line(t + 0.2, "10.79.1.7", u) for t, u in reqs).encode(), 2)
    disks["green"].files["/log/target.log"] = (
        "".join(_line(t + 0.3, "10.79.1.9", u) for t, u in reqs[:N - green_lost]).encode(), 3)
    return fakes


def _verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, green_lost: int,
            only: str | None = None) -> vt.TargetsReport:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    inv = parse_inventory(INVENTORY)
    fakes = _hosts(green_lost)
    V.save_marks(V.Marks("ab", 1.0, [V.LogMark("on1", "/log/online.log", 0, 1),
                                     V.LogMark("blue", "/log/target.log", 0, 2),
                                     V.LogMark("green", "/log/target.log", 0, 3)]))
    scope = V.resolve_scope(inv, since_up=True, window=None)
    with HostPool(inv, factory=lambda spec: fakes[spec.name]) as pool:
        return V.run_verify_targets(inv, pool, scope, clock=lambda: BASE + 100.0, only=only)


def test_one_ledger_per_target_each_with_its_verdict(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    report = _verify(tmp_path, monkeypatch, green_lost=4)
    assert [(t.name, t.role, t.address) for t in report.targets] == [
        ("blue", "baseline", "10.77.1.20"), ("green", "candidate", "10.77.1.21")]
    blue, green = (t.report for t in report.targets)
    assert blue.online_requests == green.online_requests == N
    assert (blue.target_matched, green.target_matched) == (N, N - 4)
    assert blue.verdict.passed and not green.verdict.passed
    assert green.loss_pct == pytest.approx(10.0)
    assert not report.verdict.passed
    assert report.verdict.reasons and all(r.startswith("target green: ")
                                          for r in report.verdict.reasons)
    assert {c.host for c in blue.conntrack} == {"on1", "blue"}
    assert {c.host for c in green.conntrack} == {"on1", "green"}


def test_every_target_passing_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _verify(tmp_path, monkeypatch, green_lost=0)
    assert report.verdict.passed and report.verdict.reasons == []
    console = Console(file=io.StringIO(), width=160)
    console.print(rv.targets_view(report))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "target blue (baseline, 10.77.1.20)" in shown
    assert "target green (candidate, 10.77.1.21)" in shown
    assert "2 of 2 targets pass" in shown


def test_only_one_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _verify(tmp_path, monkeypatch, green_lost=4, only="blue")
    assert [t.name for t in report.targets] == ["blue"] and report.verdict.passed
    with pytest.raises(UsageError, match="--target pink: no such target"):
        _verify(tmp_path, monkeypatch, green_lost=4, only="pink")


def test_json_lists_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _verify(tmp_path, monkeypatch, green_lost=4)
    doc = json.loads(rv.verify_targets_json(report))
    assert doc["schema"] == "labctl.verify-targets/1"
    assert doc["verdict"]["passed"] is False
    assert [(t["name"], t["role"], t["target_matched"]) for t in doc["targets"]] == [
        ("blue", "baseline", N), ("green", "candidate", N - 4)]
    single = json.loads(rv.verify_json(report.targets[0].report))
    assert single["schema"] == "labctl.verify/1" and "targets" not in single
    assert set(doc["targets"][0]) == set(single) - {"schema"} | {"name", "role", "address"}


def test_shared_counters_are_split_per_copy_not_per_client() -> None:
    d = L.DaemonStats("on1", "tcpcopy", "running",
                      {"kernel_drops": 6, "clt_syn": 100, "requests_sent": 200,
                       "sessions_timeout": 4})
    i = L.DaemonStats("assistant", "intercept", "running", {"resp_unrouted": 10})
    tc, ic = vt.share([d, i], 2)
    assert tc.counters == {"kernel_drops": 6, "clt_syn": 100, "requests_sent": 100,
                           "sessions_timeout": 2}
    assert ic.counters == {"resp_unrouted": 5}
    assert vt.share([d], 1) == [d]


def test_single_target_ledger_is_the_plain_ledger() -> None:
    """build_all with one target adds no note and changes no counter."""
    recs = [LogRecord(BASE + i, "10.78.1.10", "GET", "/", 200, 1, 1, None, 0.0)
            for i in range(3)]
    d = L.DaemonStats("on1", "tcpcopy", "running", {"requests_sent": 3})
    inp = L.LedgerInput({"on1": recs}, [], daemons=[d])
    one = vt.build_all(inp, [vt.TargetInput("t", "plain", "10.0.0.1", recs)])
    assert one.targets[0].report == L.build(L.LedgerInput({"on1": recs}, recs, daemons=[d]))


def test_report_with_several_targets_needs_target(capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.cli import main

    ab = Path(__file__).resolve().parents[2] / "inventories/staging-ab.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(ab), "--report", "/nonexistent-dir"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "--report with several targets: name the one to report on (--target NAME)" in err
    assert "targets: blue, green" in err and "Traceback" not in err
