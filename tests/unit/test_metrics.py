"""The daemons' counters in the Prometheus text format (engine.metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.metrics import metric_name, prometheus_text, samples, write_metrics
from engine.options import parse_tcpcopy_args
from engine.session.config import COUNTERS
from engine.stats import stat_lines, stats_document, write_stats


def doc(tool: str = "tcpcopy", state: str = "running", **counters: int) -> dict:
    return stats_document(tool, "1.0", 42, 100.0, 200.5, state, counters, sessions_active=7)


def test_original_counter_names_as_families() -> None:
    text = prometheus_text([(doc(captured=10, requests_sent=9), {"host": "online1"})])
    lines = text.splitlines()
    assert "# TYPE tcpcopy_captured counter" in lines
    assert 'tcpcopy_captured{host="online1"} 10' in lines
    assert 'tcpcopy_requests_sent{host="online1"} 9' in lines
    assert "# TYPE tcpcopy_sessions_active gauge" in lines
    assert 'tcpcopy_sessions_active{host="online1"} 7' in lines
    assert 'tcpcopy_up{host="online1"} 1' in lines
    assert 'tcpcopy_stats_updated_seconds{host="online1"} 200.5' in lines
    # one HELP/TYPE per family even with several daemons
    two = prometheus_text([(doc(captured=1), {"host": "a"}), (doc(captured=2), {"host": "b"})])
    assert two.count("# TYPE tcpcopy_captured counter") == 1
    assert 'tcpcopy_captured{host="b"} 2' in two


def test_copy_delay_gauges_in_seconds() -> None:
    d = {**doc(captured=3), "copy_delay_ms": {"count": 3, "last": 250.0, "max": 19500.0,
                                              "p99": 19500.0, "buckets": {"250": 2}}}
    lines = prometheus_text([(d, {})]).splitlines()
    assert "# TYPE tcpcopy_copy_delay_last_seconds gauge" in lines
    assert "tcpcopy_copy_delay_last_seconds 0.25" in lines
    assert "tcpcopy_copy_delay_max_seconds 19.5" in lines
    assert not any("copy_delay" in ln for ln in prometheus_text([(doc(), {})]).splitlines())


def test_exited_daemon_and_label_escaping() -> None:
    text = prometheus_text([(doc("intercept", "exited", resp_routed=3),
                             {"lab": 'we"ird\\lab\nx'})])
    assert 'intercept_up{lab="we\\"ird\\\\lab\\nx"} 0' in text
    assert metric_name("tcpcopy", "a-b.c") == "tcpcopy_a_b_c"
    assert [n for n, _k, _v in samples({"tool": "x", "counters": {"b": True}})] == ["x_up"]


def test_write_stats_also_writes_the_metrics_file_atomically(tmp_path: Path) -> None:
    stats, prom = tmp_path / "s.json", tmp_path / "m.prom"
    write_stats(str(stats), doc(captured=5), str(prom))
    assert json.loads(stats.read_text())["counters"]["captured"] == 5
    assert "tcpcopy_captured 5" in prom.read_text().splitlines()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp left
    write_stats(None, doc(captured=6), str(prom))           # metrics without a stats file
    assert "tcpcopy_captured 6" in prom.read_text().splitlines()
    write_metrics(str(prom), "")
    assert prom.read_text() == ""


def test_metrics_with_workers_needs_the_stats_file() -> None:
    base = ["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--metrics-file", "/tmp/m.prom"]
    assert parse_tcpcopy_args(base).metrics_file == "/tmp/m.prom"
    with pytest.raises(ValueError, match="--metrics-file with --workers needs --stats-file"):
        parse_tcpcopy_args([*base, "--workers", "2"])


def test_the_log_lines_name_the_targets_own_failures() -> None:
    c = dict.fromkeys(COUNTERS, 0)
    c.update(target_refused=7, sessions_refused=3, target_resets=2, synack_retrans=1,
             send_retried=5)
    assert stat_lines(c, 0)[-1] == ("target: refused:7 (sessions:3),resets:2,syn-ack "
                                    "repeated:1,sends refused and retried:5")
