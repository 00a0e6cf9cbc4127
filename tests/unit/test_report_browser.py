"""A generated report opened in a real browser: headless Chromium renders the HTML (the
screenshot is a PNG with many colours, not a blank page) and its DOM holds the plots' SVGs
with their data. The report is built from the fixture logs; no lab is needed.

Skipped, saying why, only when no chromium binary is installed (scripts/install.sh and CI
install Debian's `chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.report import verify as rv
from tests.unit import report_data as D

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get "
                                 "install chromium, or run scripts/install.sh)")]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A blank or text-only page has a handful of colours; four anti-aliased plots have hundreds.
MIN_COLOURS = 64


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args]
    # subprocess.run waits for chromium to exit (the condition); the timeout only bounds a hang
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    rv.write_report(D.verify_report(), out)
    return out / "report.html"


def test_chromium_renders_the_report_to_a_png_that_is_not_blank(
        report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2000",
                     "--hide-scrollbars", report.as_uri())
    assert shot.exists(), f"no screenshot; chromium said: {done.stderr[-2000:]}"
    assert shot.read_bytes()[:8] == PNG_MAGIC
    from matplotlib.image import imread  # lazy: matplotlib is heavy; only this test decodes

    pixels = imread(str(shot))
    assert pixels.shape[:2] == (2000, 1200)
    flat = pixels.reshape(-1, pixels.shape[2])
    colours = {tuple(p) for p in flat[:: 7]}  # every 7th pixel is plenty to count colours
    assert len(colours) > MIN_COLOURS, f"only {len(colours)} colours: a blank page?"


def test_chromium_dom_holds_the_plots_with_their_data(report: Path, tmp_path: Path) -> None:
    done = _chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    dom = done.stdout
    assert "</html>" in dom, f"no DOM; chromium said: {done.stderr[-2000:]}"
    plots = re.findall(r'<svg[^>]*data-plot="(\w+)"', dom)
    assert plots == ["rate", "ratio", "latency", "status"]
    for side in ("online", "target"):
        assert re.search(rf'<g id="rate-series-{side}">\s*<path d="M [\d.]+ [\d.]+\s+L', dom)
    assert len(re.findall(r'<g id="status-bars-\w+-\d+-\d+">', dom)) > 20
    assert dom.count("<figcaption>") == 4 and "Latency CDF" in dom
