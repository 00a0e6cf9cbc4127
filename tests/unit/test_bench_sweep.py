"""Pure parts of engine_bench's per-daemon flags and of bench/rate_sweep.py (verdict, args)."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from bench import rate_sweep
from bench.engine_bench import parse_args
from bench.sidebyside.copiers import flag_int
from bench.sidebyside.procs import tree_delta


def test_ours_workers_sets_both_daemons() -> None:
    a = parse_args(["--ours-workers", "2", "--ours-args", "--capture-ring-mb 8"])
    assert a.tcpcopy_flags == ["--workers", "2", "--intercept-workers", "2"]
    assert a.intercept_flags == ["--workers", "2"]


def test_per_daemon_flags_go_to_one_daemon_each() -> None:
    a = parse_args(["--ours-tcpcopy-args", "--workers 4 --intercept-workers 2",
                    "--ours-intercept-args", "--workers 2"])
    assert a.tcpcopy_flags == ["--workers", "4", "--intercept-workers", "2"]
    assert a.intercept_flags == ["--workers", "2"]


@pytest.mark.parametrize("argv,needle", [
    (["--ours-workers", "0"], "--ours-workers: must be 1-64"),
    (["--ours-workers", "2", "--ours-intercept-args", "--workers 2"], "--ours-intercept-args"),
    (["--ours-workers", "2", "--ours-args", "--workers=3 -v"], "also sets --workers"),
    (["--ours-tcpcopy-args", "--workers 2 --intercept-workers 2"], "must be equal"),
    (["--ours-args", "--workers 2"], "must be equal"),
    (["--ours-tcpcopy-args", "'unclosed"], "--ours-tcpcopy-args: No closing quotation"),
])
def test_bad_worker_combination_is_exit_2(argv: list, needle: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err.splitlines()[-1]


def test_flag_int_reads_the_last_value_in_either_spelling() -> None:
    assert flag_int(["--workers", "2", "-x", "y", "--workers=3"], "--workers") == 3
    assert flag_int(["--intercept-workers", "4"], "--workers") == 1
    assert flag_int(["--workers", "many"], "--workers", 1) == 1


def test_tree_delta_counts_a_new_worker_from_zero() -> None:
    assert tree_delta({1: 1.0, 2: 0.5}, {1: 1.5, 2: 0.75, 3: 0.25}) == {1: 0.5, 2: 0.25, 3: 0.25}


def row(**kw: Any) -> Dict[str, Any]:
    base = {"rate_asked": 4000, "rate_sent": 3990.0, "fidelity": 1.0, "trail_s": 0.1,
            "generator_core_share": 0.5, "online_nginx_core_share": 0.2}
    base.update(kw)
    return base


def test_verdict_copier_before_load_side() -> None:
    assert rate_sweep.verdict(row()) == ("pass", "")
    assert rate_sweep.verdict(row(fidelity=0.9989)) == ("fail", "copier")
    assert rate_sweep.verdict(row(trail_s=2.5)) == ("fail", "copier")
    assert rate_sweep.verdict(row(fidelity=0.5, rate_sent=100.0)) == ("fail", "copier")
    assert rate_sweep.verdict(row(rate_sent=3000.0, generator_core_share=0.95)) == (
        "fail", "generator")
    assert rate_sweep.verdict(row(rate_sent=3000.0, online_nginx_core_share=0.9)) == (
        "fail", "online nginx")
    assert rate_sweep.verdict(row(rate_sent=3000.0)) == ("fail", "box (CPUs shared)")


def test_sweep_args_quick_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    a = rate_sweep.parse_args(["--quick", "--workers", "1,2"])
    assert a.rates == [500, 1000] and a.modes == ["keepalive"] and a.seconds == 1.0
    assert a.per_workers[2].tcpcopy_flags == ["--workers", "2", "--intercept-workers", "2"]
    assert rate_sweep.generators_for(rate_sweep.parse_args([]), "keepalive", 16000) == 4
    assert rate_sweep.generators_for(rate_sweep.parse_args([]), "new", 2500) == 1
    for argv, needle in ((["--workers", "1,x"], "--workers"), (["--modes", "close"], "--modes"),
                         (["--ours-workers", "2"], "use --workers"),
                         (["--ours-args", "--workers 2"], "also sets --workers")):
        with pytest.raises(SystemExit) as exc:
            rate_sweep.parse_args(argv)
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err.splitlines()[-1]


def test_layout_says_where_the_workers_run() -> None:
    pinned = rate_sweep.layout({"online_nginx_cpu": 0, "rest_cpu": 1}, 2)
    assert "CPU 0" in pinned and "share that one core" in pinned
    assert "not pinned" in rate_sweep.layout(None, 1)
