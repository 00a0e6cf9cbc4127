"""The numbers behind the report plots (labctl.report.series): pure, from records built here."""

from __future__ import annotations

import pytest

from labctl.report import series as S
from labctl.report.render import md_cell
from labctl.verify import ledger as L
from labctl.verify.logparse import LogRecord
from tests.unit import report_data as D

T0 = 1_800_000_000.0


def rec(t: float | None, uri: str = "/", status: int | None = 200, rt: float | None = 0.01,
        method: str = "GET") -> LogRecord:
    return LogRecord(t, "10.78.1.10", method, uri, status, 10, 100, None, rt)


def test_bin_width_keeps_at_most_max_bins() -> None:
    assert S.bin_width(0) == 1 and S.bin_width(119.9) == 1 and S.bin_width(121) == 2
    assert S.bin_width(3600) == 30 and S.bin_width(10 ** 9) == S.BIN_WIDTHS[-1]


def test_rate_series_counts_per_second_per_side_and_the_ratio() -> None:
    online = [rec(T0 + s + 0.1 * k) for s in range(4) for k in range(10)]
    # the target got everything in seconds 0 and 1, half in 2, nothing in 3
    target = [r for r in online if (r.time or 0) < T0 + 2] + online[20:25]
    s = S.rate_series(S.Traffic(online, target), expected=1.0, tolerance=0.01)
    assert s.t0 == T0 and s.bin_seconds == 1 and s.starts == [0.0, 1.0, 2.0, 3.0]
    assert s.online == [10.0] * 4 and s.target == [10.0, 10.0, 5.0, 0.0]
    assert s.ratio == [1.0, 1.0, 0.5, 0.0] and (s.expected, s.tolerance) == (1.0, 0.01)


def test_rate_series_bins_divide_by_width_and_leave_gaps_without_online() -> None:
    online = [rec(T0 + t) for t in (0, 1, 2, 3)] + [rec(T0 + 299)]
    target = [rec(T0 + 150)]
    s = S.rate_series(S.Traffic(online, target, window=(T0, T0 + 300)))
    assert s.bin_seconds == 5 and len(s.starts) == 61  # 300 s / 5 s, plus the end edge
    assert s.online[0] == pytest.approx(4 / 5) and s.online[59] == pytest.approx(1 / 5)
    assert s.ratio[30] is None and s.target[30] == pytest.approx(1 / 5)


def test_rate_series_uses_t0_window_and_counts_untimed_records() -> None:
    traffic = S.Traffic([rec(T0 + 5), rec(None), rec(T0 - 100)], [rec(T0 + 6)],
                        window=(T0, T0 + 10))
    s = S.rate_series(traffic, t0=T0 - 3)
    assert s.t0 == T0 - 3 and s.untimed == 0  # the window drops untimed and early records
    assert sum(s.online) == 1 and sum(s.target) == 1
    s = S.rate_series(S.Traffic([rec(None), rec(T0)], []))
    assert s.untimed == 1 and s.online == [1.0]
    assert S.rate_series(S.Traffic([], [])).empty


def test_latency_cdf_is_nearest_rank_quantiles() -> None:
    cdf = S.latency_cdf([rec(T0, rt=v / 1000) for v in range(1, 101)] + [rec(T0, rt=None)],
                        points=5)
    assert cdf.samples == 100
    assert cdf.points == [(0.001, 0.0), (0.025, 0.25), (0.05, 0.5), (0.075, 0.75), (0.1, 1.0)]
    assert cdf.quantile(0.5) == 0.05 and cdf.quantile(0.99) == 0.1
    # the same nearest rank as the ledger's percentile
    values = [r.request_time or 0 for r in D.records("target")]
    full = S.latency_cdf(D.records("target"))
    assert full.quantile(0.5) == L.percentile(values, 50)
    assert S.latency_cdf([rec(T0, rt=None)]) == S.Cdf(0, [])


def test_status_mix_per_endpoint_busiest_first_with_other() -> None:
    online = ([rec(T0, "/a?x=1")] * 3 + [rec(T0, "/b", 404)] * 2 + [rec(T0, "/c")]
              + [rec(T0, "/d", None)])
    target = [rec(T0, "/a", 502), rec(T0, "/a"), rec(T0, "/b", 404), rec(T0, "/z")]
    mix = S.status_mix(S.Traffic(online, target), limit=3)
    assert mix.endpoints == ["GET /a", "GET /b", S.OTHER]
    assert mix.codes == [0, 200, 404, 502]
    assert mix.counts["online"] == {"GET /a": {200: 3}, "GET /b": {404: 2},
                                    S.OTHER: {0: 1, 200: 1}}
    assert mix.counts["target"] == {"GET /a": {200: 1, 502: 1}, "GET /b": {404: 1},
                                    S.OTHER: {200: 1}}
    assert mix.column("target", 200) == [1, 0, 1] and mix.column("online", 404) == [0, 2, 0]
    assert S.status_mix(S.Traffic([rec(T0, "/a")], [])).endpoints == ["GET /a"]


def test_counter_steps_sum_per_tool_and_keep_only_losses_seen() -> None:
    def d(tool: str, **c: int) -> L.DaemonStats:
        return L.DaemonStats("h", tool, "running", c)

    cs = S.counter_steps([
        ("step 3", [d("tcpcopy", captured=10, requests_sent=5), d("intercept", captured=7),
                    d("tcpcopy", captured=1, requests_sent=1)]),
        ("step 5", [d("tcpcopy", captured=4, sessions_no_synack=2, send_errors=0)]),
    ])
    assert cs.steps == ["step 3", "step 5"]
    assert cs.volumes == {"tcpcopy captured": [11, 4], "tcpcopy requests_sent": [6, 0],
                          "intercept captured": [7, 0]}
    assert cs.losses == {"tcpcopy sessions_no_synack": [0, 2]}
    assert S.counter_steps([]).empty and S.counter_steps([("step 1", [])]).empty


def test_merge_joins_spans_and_applies_each_window() -> None:
    a = S.Traffic([rec(T0), rec(T0 + 50)], [rec(T0 + 1)], window=(T0, T0 + 10))
    b = S.Traffic([rec(T0 + 20)], [])
    m = S.merge([a, b])
    assert [r.time for r in m.online] == [T0, T0 + 20] and len(m.target) == 1


def test_markdown_cells_never_carry_markup_from_a_log() -> None:
    """A URI from an access log is shown as text in report.md: no HTML, no link, no table
    break (issue 13 review: the Markdown report passed URIs through unescaped)."""
    cell = md_cell("/a|b<script>alert(1)</script>[x](javascript:y) *b* `c`\nz")
    assert "<" not in cell and ">" not in cell and "\n" not in cell
    assert "\\|" in cell and "\\[x\\]" in cell and "\\*b\\*" in cell and "\\`c\\`" in cell
