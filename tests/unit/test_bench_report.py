"""Pure parts of the side-by-side engine bench (bench/sidebyside): summary, ratios, table, args."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.engine_bench import parse_args
from bench.sidebyside import report
from bench.sidebyside.scenarios import scenarios


def run(side: str, scenario: str, fid: float, tc: float, rss: float, lat: float) -> dict:
    return {"scenario": scenario, "side": side, "online_rate": 1000.0, "fidelity": fid,
            "trail_s": 0.5, "kernel_drops": {"tcpcopy": 0, "intercept": None},
            "cpu_s_per_10k": {"tcpcopy": tc, "intercept": tc / 2},
            "rss_mb": {"tcpcopy": rss, "intercept": 20.0},
            "client": {"latency_ms": {"p50": lat, "p99": 2 * lat, "p99.9": 3 * lat}}}


def test_summary_means_per_side_and_ratio_ours_over_theirs() -> None:
    runs = [run("ours", "paced-ka", 1.0, 2.0, 30.0, 0.2),
            run("ours", "paced-ka", 1.0, 4.0, 30.0, 0.4),
            run("theirs", "paced-ka", 0.5, 1.0, 5.0, 0.1),
            {"scenario": "paced-ka", "side": "off", "client": {"latency_ms": {
                "p50": 0.1, "p99": 0.2, "p99.9": 0.3}}}]
    s = report.summarize(runs, ["paced-ka", "wrk-c10-ka"])
    assert s["paced-ka"]["ours"]["cpu_tcpcopy_per_10k"] == 3.0
    assert s["paced-ka"]["ours"]["runs"] == 2
    assert s["paced-ka"]["ratio"]["cpu_tcpcopy_per_10k"] == 3.0
    assert s["paced-ka"]["ratio"]["fidelity"] == 2.0
    assert s["paced-ka"]["ratio"]["rss_tcpcopy_mb"] == 6.0
    assert s["paced-ka"]["theirs"]["drops_intercept"] is None
    assert s["paced-ka"]["ratio"]["drops_tcpcopy"] is None          # 0 / 0
    assert s["wrk-c10-ka"] == {}
    lat = report.latency(runs, ["paced-ka"])
    assert lat["paced-ka"]["off"] == {"p50": 0.1, "p99": 0.2, "p99.9": 0.3}
    assert lat["paced-ka"]["ours"]["p99"] == pytest.approx(0.6)
    text = report.table(s, lat)
    assert "ours/theirs" in text and "paced-ka, copier off" in text


def test_quick_scenarios_are_the_full_four_shortened() -> None:
    full, quick = scenarios(False), scenarios(True)
    assert [s.name for s in full] == [s.name for s in quick] == [
        "paced-ka", "paced-new", "wrk-c10-ka", "wrk-c50-close"]
    assert [s.seconds for s in full] == [10.0, 10.0, 20.0, 10.0]
    assert all(s.seconds == 1.0 for s in quick)
    assert full[3].close and full[1].mode == "new" and full[0].rate == 1000


def test_bad_flags_are_one_line_errors(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for argv, word in ((["--against", str(tmp_path)], "no file tcpcopy"),
                       (["--lab-prefix", "Toolong"], "--lab-prefix"),
                       (["--rounds", "0"], "--rounds"),
                       (["--scenarios", "paced-ka,nope"], "unknown nope")):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
        assert word in capsys.readouterr().err
    assert parse_args(["--quick", "--rounds", "3"]).rounds == 1


def test_system_cpu_and_run_delay_are_summarized_per_daemon() -> None:
    ours = {**run("ours", "paced-ka", 1.0, 2.0, 30.0, 0.2),
            "sys_s_per_10k": {"tcpcopy": 0.5, "intercept": 0.25},
            "run_delay_s": {"tcpcopy": 3.0, "intercept": 1.5}}
    theirs = {**run("theirs", "paced-ka", 1.0, 1.0, 5.0, 0.2),
              "sys_s_per_10k": {"tcpcopy": 1.0, "intercept": 0.5},
              "run_delay_s": {"tcpcopy": 2.0, "intercept": 1.0}}
    s = report.summarize([ours, theirs], ["paced-ka"])
    assert s["paced-ka"]["ours"]["sys_tcpcopy_per_10k"] == 0.5
    assert s["paced-ka"]["ratio"]["sys_intercept_per_10k"] == 0.5
    assert s["paced-ka"]["ratio"]["wait_tcpcopy_s"] == 1.5
    # a run of an older bench (no such fields) gives "-" rather than failing
    old = report.summarize([run("ours", "paced-ka", 1.0, 2.0, 30.0, 0.2)], ["paced-ka"])
    assert old["paced-ka"]["ours"]["wait_intercept_s"] is None
    assert "tc wait s" in report.table(s, {})
