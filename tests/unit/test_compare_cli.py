"""`labctl compare` end to end without a lab: the inventory's roles, the logs read from fake
hosts (FakeTransport answering `stat`/`tail` from memory, as verify's tests do), the table,
`--json`, `--report` and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.cli import compare as cc
from labctl.cli import main
from labctl.compare import fetch as cf
from labctl.errors import UsageError
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.transport.fake import FakeTransport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as V
from tests.unit.compare_logs import KEYS, Change, Logs, synth
from tests.unit.test_ledger_fetch import Disk

INVENTORY = """
lab: h6ab
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
compare: {bootstrap: 300}
state_dir: /state
"""
HOSTS = ("on1", "blue", "green", "assistant")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: Logs,
        text: str = INVENTORY) -> Path:
    """An inventory file, marks as `up` leaves them, and fake hosts holding `logs`."""
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")  # the table's rows unwrapped
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    fakes = {n: FakeTransport(n) for n in HOSTS}
    files = {"on1": ("/log/online.log", logs.online), "blue": ("/log/target.log", logs.baseline),
             "green": ("/log/target.log", logs.candidate)}
    for i, (host, (log, content)) in enumerate(files.items()):
        Disk(fakes[host]).files[log] = (content.encode(), 10 + i)
    V.save_marks(V.Marks("h6ab", 1.0, [V.LogMark(h, log, 0, 10 + i)
                                       for i, (h, (log, _)) in enumerate(files.items())]))

    def pool(inv: Inventory) -> HostPool:
        return HostPool(inv, factory=lambda spec: fakes[spec.name])

    monkeypatch.setattr(cc, "_pool", pool)
    return path


FAULTS = {"items": Change(error_share=0.2), "users": Change(slower_ms=200),
          "lines": Change(size_delta=100)}


def test_identical_versions_exit_0_with_a_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    inv = lab(tmp_path, monkeypatch, synth(1, requests=1200))
    code, out, err = run(capsys, "compare", str(inv), "--since-up")
    assert code == 0, err
    assert "baseline vs candidate per endpoint" in out and "verdict: PASS" in out
    assert KEYS["items"] in out and "blue" in out and "green" in out


def test_a_regression_exits_3_and_names_the_endpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    inv = lab(tmp_path, monkeypatch, synth(2, requests=1800, changes=FAULTS))
    code, out, err = run(capsys, "compare", str(inv), "--since-up", "--report",
                         str(tmp_path / "rep"))
    assert code == 3
    assert "\nerror: verdict REGRESSION: " in err and "Traceback" not in err
    for name in ("items", "users", "lines"):
        assert KEYS[name] in err
    assert "verdict: REGRESSION" in out and "e.g. /api/items/" in out
    assert (tmp_path / "rep" / "report.md").read_text().startswith("# labctl compare: REGR")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["hosts"] == {"online": "on1", "baseline": "blue", "candidate": "green"}


def test_json_is_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    inv = lab(tmp_path, monkeypatch, synth(3, requests=1800, changes=FAULTS))
    code, out, _err = run(capsys, "compare", str(inv), "--since-up", "--json")
    data = json.loads(out)
    assert code == 3 and data["schema"] == "labctl.compare/1"
    assert {(f["endpoint"], f["kind"], f["direction"]) for f in data["flags"]} == {
        (KEYS["items"], "errors", "worse"), (KEYS["users"], "latency", "worse"),
        (KEYS["lines"], "body_size", "changed")}
    assert data["thresholds"]["bootstrap"] == 300 and data["matched"] == 1800


def test_an_inventory_without_roles_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    text = INVENTORY.replace("role: candidate", "role: plain")
    inv = lab(tmp_path, monkeypatch, synth(4, requests=100), text)
    code, out, err = run(capsys, "compare", str(inv), "--since-up")
    assert code == 2 and out == ""
    assert "compare needs one baseline and one candidate target" in err
    assert "blue (baseline), green (plain)" in err and "hint: " in err


def test_bad_compare_section_names_the_field(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY.replace("{bootstrap: 300}", "{alpha: 2}"))
    code, _out, err = run(capsys, "compare", str(path), "--since-up")
    assert code == 2 and "compare.alpha" in err and "Traceback" not in err


def test_window_and_since_up_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "compare", "--window", "60s", "--since-up")
    assert code == 2 and "--window or --since-up" in err


def test_sides_from_roles() -> None:
    inv = parse_inventory(INVENTORY)
    assert {s: h.name for s, h in cf.compared_targets(inv).items()} == {
        "baseline": "blue", "candidate": "green"}
    single = parse_inventory(INVENTORY.replace(
        "  targets:\n    - {name: blue, address: 10.77.1.20, role: baseline}\n"
        "    - {name: green, address: 10.77.1.21, role: candidate}\n",
        "  target: {name: blue, address: 10.77.1.20}\n"))
    with pytest.raises(UsageError, match=r"has: blue \(plain\)"):
        cf.compared_targets(single)


def test_thresholds_come_from_the_inventory() -> None:
    inv = parse_inventory(INVENTORY.replace("{bootstrap: 300}",
                                            "{min_requests: 50, latency_ms: 35, alpha: 0.05}"))
    th = cf.thresholds(inv)
    assert (th.min_requests, th.latency_ms, th.alpha, th.bootstrap) == (50, 35.0, 0.05, 1000)
