"""Drill reports rendered from fake results: files, contents, escaping, no payloads."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.report.drill import (
    FILES,
    default_dir,
    render_html,
    render_markdown,
    to_json,
    view,
    write_report,
)
from tests.unit.test_drill_fakes import result


def test_write_report_creates_all_files(tmp_path: Path) -> None:
    r = result()
    paths = write_report(r, tmp_path / "out")
    assert [p.name for p in paths] == list(FILES)
    assert all(p.stat().st_size > 200 for p in paths)
    assert r.report_dir == str(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert data["verdict"] == "PASSED" and data["passed"] is True
    assert [s["status"] for s in data["steps"]] == ["ok"] * 5
    assert data["steps"][3]["ledger"]["attribution"]["missing"] == 40


def test_markdown_has_steps_ledger_tables_counters_and_verdict() -> None:
    md = render_markdown(result())
    assert md.startswith("# Drill `smoke`: PASSED")
    assert "| 3 | verify (expect pass) | ok |" in md
    for heading in ("**Copy ratio**", "**Loss attribution** (40 missing copies)",
                    "**Latency (s)**", "**Status mix**", "**Engine counters**"):
        assert heading in md, heading
    assert "| copy ratio | 0.6000 |" in md and "| copy ratio | 1.0000 |" in md
    assert "requests_sent=100" in md and "sessions_no_synack=30" in md
    assert "- [x] verdict: ledger verdict FAIL (expected fail)" in md
    assert "destroy lab: ok" in md and "```yaml\nname: smoke" in md
    assert "pipes" in md


def test_failed_result_says_why() -> None:
    r = result(passed=False)
    md = render_markdown(r)
    assert md.startswith("# Drill `smoke`: FAILED")
    assert "## Why it failed" in md and "step 3 (verify (expect pass))" in md
    assert "| 3 | verify (expect pass) | **failed** |" in md
    assert "FAILED" in render_html(r)


def test_html_is_self_contained_and_escaped() -> None:
    html = render_html(result())
    assert html.lstrip().startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for external in ("<script", "<link", "src=", "http://", "https://", "@import"):
        assert external not in html, external
    assert "A &lt;b&gt;smoke&lt;/b&gt; drill" in html and "<b>smoke</b>" not in html
    assert "Loss attribution (40 missing copies)" in html
    assert html.count('class="ok"') >= 5


def test_no_payloads_in_any_form() -> None:
    """The lab's POST bodies are runs of "x"; a report holds lengths, never bodies."""
    text = render_markdown(result()) + render_html(result()) + to_json(result())
    assert "x" * 32 not in text
    data = json.loads(to_json(result()))
    keys = set(data) | {k for s in data["steps"] for k in s}
    assert not keys & {"body", "payload", "data"}


def test_view_is_plain_values_and_default_dir_is_named() -> None:
    v = view(result())
    assert v["verdict"] == "PASSED" and v["steps"][3]["ledger"]["missing"] == 40
    assert v["steps"][0]["duration"] == "12.0 s"
    d = default_dir("smoke", 1_700_000_000.0, base="/x")
    assert d.parent == Path("/x/labctl-reports") and d.name.startswith("smoke-2023")
