"""Plots as inline SVG and the reports that carry them (drill and verify), from fixture data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from labctl.report import drill as rd
from labctl.report import plots as P
from labctl.report import series as S
from labctl.report import verify as rv
from tests.unit import report_data as D

PLOTS = ("rate", "ratio", "latency", "status")


def _svgs(html: str) -> dict[str, str]:
    """Plot name -> its whole inline <svg> element."""
    return {m.group(1): m.group(0) for m in re.finditer(
        r'<svg[^>]*data-plot="(\w+)"[^>]*>.*?</svg>', html, re.S)}


def test_each_plot_is_an_svg_with_title_axes_legend_and_data_marks() -> None:
    html = rv.render_html(D.verify_report())
    svgs = _svgs(html)
    assert set(svgs) == set(PLOTS)
    for name, svg in svgs.items():
        assert f'<title id="{name}-title">' in svg and 'role="img"' in svg, name
        assert f'id="{name}-legend_1"' in svg, name  # every plot has a legend
        assert svg.count("<text") > 10, name  # titles, labels, ticks stay text
        assert not re.search(r'\bid="(?!' + name + '-)', svg), name  # ids are namespaced
    rate = svgs["rate"]
    for side in ("online", "target"):
        line = re.search(rf'<g id="rate-series-{side}">\s*<path d="([^"]+)"', rate)
        assert line and line.group(1).count("L") >= 50, side  # one vertex per 1 s bin
    assert "requests/s (per 1 s bin)" in rate and "time since 2027-01-15 08:00:00 UTC (s)" in rate
    assert 'id="ratio-series-ratio"' in svgs["ratio"] and "expected 1" in svgs["ratio"]
    assert "request time (ms)" in svgs["latency"] and "online (660 requests)" in svgs["latency"]
    bars = re.findall(r'<g id="status-bars-(online|target)-(\d+)-\d+">\s*<path d="M ', html)
    assert {("online", "200"), ("online", "404"), ("target", "502")} <= set(bars)


def test_html_figures_have_captions_and_no_external_assets() -> None:
    html = rv.render_html(D.verify_report())
    assert html.count("<figure") == 4 and html.count("<figcaption>") == 4
    assert '<figure id="plot-rate">' in html
    for external in ("<script", "<link", "src=", "http://", "https://", "@import", "<?xml"):
        assert external not in html, external
    assert "Verify <code>h6u</code>" in html and "Loss attribution" in html


def test_verify_report_files_json_holds_the_numbers_drawn(tmp_path: Path) -> None:
    rep = D.verify_report()
    paths = rv.write_report(rep, tmp_path / "r")
    assert [p.name for p in paths] == list(rv.FILES)
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["schema"] == rv.SCHEMA and data["verdict"] == rep.verdict
    assert data["ledger"]["online_requests"] == 660
    plots = data["plots"]
    assert set(plots) == set(PLOTS)
    rate = plots["rate"]["data"]
    assert rate["bin_seconds"] == 1 and sum(rate["online_rps"]) == 660
    assert sum(rate["target_rps"]) == 624
    ratio = plots["ratio"]["data"]["ratio"]
    assert min(r for r in ratio if r is not None) < 0.6  # the fault's 4 s are visible
    lat = plots["latency"]["data"]["online"]
    assert lat["samples"] == 660 and lat["points_s_fraction"][-1][1] == 1.0
    assert plots["status"]["data"]["counts"]["target"]["GET /"]["200"] > 100
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.startswith("# Verify `h6u`: ") and "**Requests per second, online vs target**" in md
    assert "<svg" not in md and "<svg" not in (tmp_path / "r" / "report.json").read_text()


def test_no_records_means_no_traffic_plots_and_a_note_why() -> None:
    rep = D.verify_report()
    empty = rv.VerifyReport(rep.ledger, S.Traffic([], []), "h6u")
    html = rv.render_html(empty)
    assert "<svg" not in html and "Not drawn" in html and "rate (needs access-log" in html
    assert json.loads(rv.to_json(empty))["plots"] == {}


def test_drill_report_draws_the_run_with_steps_marked_and_counters_per_step(
        tmp_path: Path) -> None:
    r = D.drill_result()
    rd.write_report(r, tmp_path)
    html = (tmp_path / "report.html").read_text()
    svgs = _svgs(html)
    assert set(svgs) == {*PLOTS, "counters"}
    assert "step starts" in svgs["rate"] and "3 verify" in svgs["rate"]
    assert "what flowed" in svgs["counters"] and "what was lost" in svgs["counters"]
    assert 'id="counters-bars-tcpcopy-requests_sent-1"' in svgs["counters"]
    data = json.loads((tmp_path / "result.json").read_text())
    counters = data["plots"]["counters"]["data"]
    assert counters["steps"] == ["step 3", "step 4"]
    assert counters["volumes"]["tcpcopy requests_sent"] == [
        len(s.records[1]) for s in r.steps[2:4] if s.records]
    assert all("records" not in s for s in data["steps"])  # records are never written out
    assert data["plots"]["rate"]["data"]["t0"] == r.started_at
    md = (tmp_path / "report.md").read_text()
    assert "## Plots" in md and "**Engine counters per verify step**" in md


def test_same_data_same_svg() -> None:
    a = P.latency_plot(S.latency_cdfs(S.Traffic(D.records("online"), D.records("target"))))
    b = P.latency_plot(S.latency_cdfs(S.Traffic(D.records("online"), D.records("target"))))
    assert a is not None and b is not None and a.svg == b.svg


def test_labctl_help_does_not_import_matplotlib() -> None:
    code = ("import sys\nfrom labctl.cli import app\nimport labctl.report.drill, "
            "labctl.report.verify\nassert 'matplotlib' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
