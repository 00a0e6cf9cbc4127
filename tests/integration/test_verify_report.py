"""`labctl verify --report DIR` after a short run in the local lab (real sshd, nginx and the
engine): the report's numbers are the run's, and its HTML carries the four plots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo
from labctl.lab.inventory import render_lab_inventory
from labctl.up import down as ops_down
from labctl.up import run as ops
from tests.integration.conftest import unique_lab_name
from tests.integration.test_verify import CopyLab, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def copy_lab(lab_factory: Callable[..., LabInfo], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[CopyLab]:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    info = lab_factory(name=unique_lab_name())
    text = render_lab_inventory(info, topology="three-server")
    path = tmp_path / f"{info.name}.yaml"
    path.write_text(text)
    inv = parse_inventory(text, source=str(path))
    report = ops.up(inv, ops.UpOptions(inventory_path=str(path), inventory_text=text))
    assert report.ok, report.errors
    try:
        yield CopyLab(info, inv, path)
    finally:
        ops_down.down(inv)


def test_verify_report_after_a_short_run(copy_lab: CopyLab, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    truth = copy_lab.traffic(400, rate=100)
    sent = int(truth["sent"])
    assert sent >= 395, truth
    copy_lab.wait_copies(sent)
    out = tmp_path / "report"
    code, stdout = run_cli(capsys, "verify", str(copy_lab.path), "--since-up", "--report",
                           str(out))
    assert f"report: {out / 'report.html'}" in stdout.replace("\n", "")
    data = json.loads((out / "report.json").read_text())
    assert data["ledger"]["online_requests"] == sent
    assert code == (0 if data["ledger"]["verdict"]["passed"] else 3)
    plots = data["plots"]
    assert set(plots) == {"rate", "ratio", "latency", "status"}
    rate = plots["rate"]["data"]
    assert round(sum(rate["online_rps"]) * rate["bin_seconds"]) == sent
    assert plots["latency"]["data"]["online"]["samples"] == sent
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 4 and html.count("<figcaption>") == 4
