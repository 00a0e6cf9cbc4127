"""`labctl verify --report DIR` at the CLI edge, on scripted hosts serving the fixture logs:
the three files are written, their paths printed (to stderr with --json, so stdout stays one
JSON document), and the exit code is still the verdict's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest

from labctl.cli import main
from labctl.cli import verify as cv
from labctl.drill.steps import watch_records
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.report.verify import render_html
from labctl.transport.fake import FakeTransport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as V
from labctl.verify import ledger as L
from labctl.verify.logparse import LogRecord
from labctl.verify.selection import SelectionFigures
from tests.unit import report_data as D
from tests.unit.report_data import LOGS, T0
from tests.unit.test_ledger_fetch import INVENTORY, Disk
from tests.unit.test_select_inventory import STAGING, inv_with

HOSTS = ("on1", "on2", "target", "assistant")


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An inventory whose hosts are fakes: on1 logged the fixture's online log, on2 nothing,
    the target the fixture's copies; `up` left marks at the start of every log."""
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    fakes = {n: FakeTransport(n) for n in HOSTS}
    disks = {n: Disk(f) for n, f in fakes.items()}
    disks["on1"].files["/log/online.log"] = ((LOGS / "online.log").read_bytes(), 1)
    disks["on2"].files["/log/online.log"] = (b"", 2)
    disks["target"].files["/log/target.log"] = ((LOGS / "target.log").read_bytes(), 3)
    for f in fakes.values():
        f.on(["cat", *V.CONNTRACK], stdout="10\n1000\n")
        f.on_regex(r"^cat /state/h6u/\w+/journal.json$", exit_code=1, stderr="No such file")
    V.save_marks(V.Marks("h6u", 1.0, [
        V.LogMark("on1", "/log/online.log", 0, 1), V.LogMark("on2", "/log/online.log", 0, 2),
        V.LogMark("target", "/log/target.log", 0, 3)]))

    def pool(inv: Inventory, parallel: Optional[int] = None) -> HostPool:
        return HostPool(inv, factory=lambda spec: fakes[spec.name], parallel=parallel)

    monkeypatch.setattr(cv, "_pool", pool)
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    return inv


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_report_writes_html_md_json_and_prints_their_paths(
        lab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    code, stdout, _err = _run(capsys, "verify", str(lab), "--report", str(out))
    assert code == 3  # the fixture lost copies: the verdict still decides the exit code
    names = ("report.html", "report.md", "report.json")
    assert f"report: {', '.join(str(out / n) for n in names)}" in stdout.replace("\n", "")
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 4 and "Verify <code>h6u</code>" in html
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "FAIL" and data["ledger"]["online_requests"] == 660
    assert data["ledger"]["online_by_host"] == {"on1": 660, "on2": 0}
    assert sum(data["plots"]["rate"]["data"]["target_rps"]) == 624
    assert "since `up` marked the logs" in data["scope"]


def test_report_with_json_keeps_stdout_one_document(
        lab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = _run(capsys, "verify", str(lab), "--json", "--report",
                             str(tmp_path / "r"))
    assert code == 3 and json.loads(stdout)["schema"] == "labctl.verify/1"
    assert f"report: {tmp_path / 'r' / 'report.html'}" in err
    assert (tmp_path / "r" / "report.json").exists()


def test_watch_records_keep_what_the_ledger_expects_copies_of() -> None:
    """With engine.select the online side of the plots is the selected requests (as the
    ledger counts them), so a healthy copy plots at ratio 1; the target side is everything
    it logged."""
    inv = inv_with("allow_path: /api")
    on, tg = inv.hosts.online[0].name, inv.targets[0].name
    online = [LogRecord(T0 + i, "10.0.0.1", "GET", u, 200, 1, 1, None, 0.001)
              for i, u in enumerate(["/api/a", "/static/x", "/api/b", "/"])]
    target = [LogRecord(T0 + 0.1, "10.9.0.1", "GET", "/api/a", 200, 1, 1, None, 0.002)]
    watch = SimpleNamespace(inv=inv, targets=inv.targets,
                            records={(on, "/a.log"): online, (tg, "/t.log"): target})
    got_online, got_target = watch_records(watch)  # type: ignore[arg-type]
    assert [r.uri for r in got_online] == ["/api/a", "/api/b"] and got_target == target
    plain = parse_inventory(STAGING, "inv.yaml")
    watch.inv = plain
    assert len(watch_records(watch)[0]) == 4  # type: ignore[arg-type]


def test_inconclusive_ledger_is_said_so_with_the_selection_row() -> None:
    rep = D.verify_report()
    led = replace(rep.ledger, verdict=L.Verdict(False, ["a rule needs $host"], 0.005, True),
                  selection=SelectionFigures(["allow_path /api"], 600, 60, {"allow_path": 60},
                                             0, [], 0))
    inconclusive = replace(rep, ledger=led)
    assert inconclusive.verdict == "INCONCLUSIVE"
    html = render_html(inconclusive)
    assert '<span class="verdict INCONCLUSIVE">INCONCLUSIVE</span>' in html
    assert "ledger INCONCLUSIVE" in html
    assert "selected 600 of 660 online requests (60 filtered by the selection)" in html
