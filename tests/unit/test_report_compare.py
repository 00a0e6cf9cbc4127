"""The compare report (`labctl compare --report DIR`): HTML with the flags, the endpoint table
(flagged rows highlighted) and two inline SVG plots, built from a synthetic comparison with three
known regressions; and the same page rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.report.compare import write_report
from tests.unit.compare_logs import synth
from tests.unit.test_compare import FAULTS, compare


def test_compare_report_shows_flags_table_and_plots(tmp_path: Path) -> None:
    report = compare(synth(3, changes=FAULTS))
    paths = write_report(report, tmp_path)
    assert sorted(p.name for p in paths) == ["report.html", "report.json", "report.md"]
    html = (tmp_path / "report.html").read_text()
    assert "REGRESSION" in html and html.count("<svg") == 2
    assert html.count('<tr class="flagged">') == 3 * 3      # 3 endpoints x 3 sides
    assert "http://" not in html and "<script" not in html
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["schema"] == "labctl.compare/1" and len(data["flags"]) == 3
    lat = data["plots"]["compare-latency"]["data"]["endpoints"]
    slow = next(e for e in lat if e["endpoint"] == next(
        f["endpoint"] for f in data["flags"] if f["kind"] == "latency"))
    assert slow["sides"]["candidate"]["value"] - slow["sides"]["baseline"]["value"] > 150
    errors = data["plots"]["compare-errors"]["data"]["endpoints"]
    assert any(e["share"].get("candidate", 0) > 0.1 for e in errors)


@pytest.mark.browser
def test_compare_report_renders_in_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/install.sh installs it)")
    write_report(compare(synth(5, changes=FAULTS)), tmp_path)
    page = (tmp_path / "report.html").resolve().as_uri()
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page], capture_output=True, text=True, timeout=90,
                         check=True).stdout
    svgs = re.findall(r"<svg\b.*?</svg>", dom, flags=re.S)
    assert len(svgs) == 2 and all("<path" in s or "<use" in s for s in svgs)
