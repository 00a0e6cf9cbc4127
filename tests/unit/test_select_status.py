"""`labctl status` with tcpcopy's selection counters (issue 9): shown when the engine reports
them, absent (and nothing else changed) on an engine without a selection; --json has them."""

from __future__ import annotations

import json

from labctl.cli.render import ops as render
from labctl.hosts import daemons
from labctl.plain import dumps
from labctl.up.down import HostStatus, StatusReport
from tests.unit.test_render import text

SELECT = {"rules": ["--allow-path /api"], "safe": False,
          "by_rule": {"--allow-path /api": {"selected": 12, "skipped": 0, "unparsable": 0,
                                            "non_http": 0},
                      "--allow-path (none matched)": {"selected": 0, "skipped": 30,
                                                      "unparsable": 0, "non_http": 0}}}
STATS = {"started_at": 100.0, "state": "running",
         "counters": {"captured": 90, "requests_sent": 12, "requests_selected": 12,
                      "requests_skipped": 30, "sessions_unselected": 4,
                      "streams_unparsable": 0, "streams_non_http": 1},
         "select": SELECT}


def test_summarize_keeps_the_selection_counters_and_rules() -> None:
    st = daemons.summarize("tcpcopy", 7, STATS, 130.0)
    assert st.counters["requests_selected"] == 12 and st.counters["requests_skipped"] == 30
    assert st.counters["sessions_unselected"] == 4 and st.counters["streams_non_http"] == 1
    assert st.extra["select"] == SELECT


def test_engine_without_selection_shows_what_it_showed() -> None:
    stats = {"started_at": 100.0, "counters": {"captured": 5, "requests_sent": 3}}
    st = daemons.summarize("tcpcopy", 7, stats, 130.0)
    assert st.counters == {"captured": 5, "requests_sent": 3} and "select" not in st.extra
    out = text(render.status_renderable(StatusReport("demo", [HostStatus(
        "online", "up", daemons=[st])])))
    assert "selection" not in out and "requests_selected" not in out


def test_status_table_and_json_show_the_selection() -> None:
    st = daemons.summarize("tcpcopy", 7, STATS, 130.0)
    report = StatusReport("demo", [HostStatus("online", "up", daemons=[st])])
    out = text(render.status_renderable(report))
    assert "requests_selected=12" in out and "requests_skipped=30" in out
    assert "sessions_unselected=4" in out
    assert "selection: --allow-path /api" in out
    assert "--allow-path (none matched): skipped 30" in out
    data = json.loads(dumps(report))
    tc = data["hosts"][0]["daemons"][0]
    assert tc["counters"]["requests_skipped"] == 30 and tc["extra"]["select"] == SELECT


def test_selection_lines_tolerate_odd_stats() -> None:
    assert render.selection_lines(None) == []
    assert render.selection_lines({"rules": [], "safe": True, "by_rule": "x"}) == [
        "selection: --safe"]
    assert render.selection_lines({"by_rule": {"default": {"selected": 0}}})[1] == \
        "  default: nothing yet"


def test_status_shows_how_long_copied_requests_waited_in_tcpcopy() -> None:
    delay = {"count": 40, "mean": 3.0, "p50": 0.2, "p90": 1.0, "p99": 1.2, "max": 19500.0,
             "last": 0.41, "buckets": {"0.2": 39, "19500": 1}}
    st = daemons.summarize("tcpcopy", 7, {**STATS, "copy_delay_ms": delay}, 130.0)
    assert st.extra["copy_delay_ms"] == {"count": 40, "last": 0.41, "p50": 0.2, "p99": 1.2,
                                         "max": 19500.0}       # no buckets in the status
    out = text(render.status_renderable(StatusReport("demo", [HostStatus(
        "online", "up", daemons=[st])])))
    assert "copy delay: last 0.41 ms, p99 1.2 ms, max 19.5 s" in out
    assert render.delay_lines({"count": 0, "last": 0.0}) == []       # nothing copied yet
    assert render.delay_lines(None) == [] and render.delay_lines({"count": 3}) == []
