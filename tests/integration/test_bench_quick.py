"""The side-by-side engine bench in its --quick form (CI smoke: no thresholds, only sanity).

Runs ``bench/engine_bench.py --quick`` (ours only; with ``$LABCTL_BENCH_AGAINST=DIR`` also the
C tools in DIR) and checks that the JSON holds every scenario with sane fields, and that the
bench's lab is gone afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import unique_lab_name

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("paced-ka", "paced-new", "wrk-c10-ka", "wrk-c50-close")


def check_side(name: str, side: dict) -> None:
    assert side["runs"] == 1, (name, side)
    assert side["online_rate"] > 0, (name, side)
    assert 0 < side["fidelity"] <= 1.5, (name, side)
    assert side["trail_s"] >= 0, (name, side)
    assert side["cpu_tcpcopy_per_10k"] > 0 and side["cpu_intercept_per_10k"] >= 0, (name, side)
    assert side["rss_tcpcopy_mb"] > 1 and side["rss_intercept_mb"] > 1, (name, side)
    assert side["drops_tcpcopy"] is not None and side["drops_tcpcopy"] >= 0, (name, side)


def test_bench_quick_writes_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    prefix = unique_lab_name("bq")[:4]
    against = os.environ.get("LABCTL_BENCH_AGAINST")
    argv = [sys.executable, str(REPO / "bench" / "engine_bench.py"), "--quick", "--out", str(out),
            "--lab-prefix", prefix, *(["--against", against] if against else [])]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text())
    sides = ("ours", "theirs") if against else ("ours",)
    assert set(doc["summary"]) == set(SCENARIOS)
    for name in SCENARIOS:
        entry = doc["summary"][name]
        for side in sides:
            check_side(name, entry[side])
        if against:
            assert set(entry["ratio"]) >= {"fidelity", "cpu_tcpcopy_per_10k", "rss_tcpcopy_mb"}
    for name in ("paced-ka", "paced-new"):
        for copier in ("off", *sides):
            lat = doc["latency"][name][copier]
            assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"], (name, copier, lat)
    runs = doc["runs"]
    assert len(runs) == 2 + len(SCENARIOS) * len(sides)
    assert all(r["online"] > 0 for r in runs), runs
    assert doc["box"]["commit"] and doc["scenarios"]["wrk-c50-close"]["close"] is True
    assert "paced-ka" in res.stdout and "online latency ms" in res.stdout
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"lc-{prefix}" not in left, left


def test_rate_sweep_quick_one_and_two_workers(tmp_path: Path) -> None:
    """``bench/rate_sweep.py --quick``: two 1 s keep-alive steps with 1 and with 2 workers
    (our pair started through engine_bench's per-daemon flags); each step copied, its CPU
    read from every process of the pair (parent + workers), and the lab is gone after."""
    out = tmp_path / "sweep.json"
    prefix = unique_lab_name("rq")[:4]
    argv = [sys.executable, str(REPO / "bench" / "rate_sweep.py"), "--quick", "--no-pin",
            "--out", str(out), "--lab-prefix", prefix]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(out.read_text())
    steps = doc["steps"]
    assert [(s["workers"], s["rate_asked"]) for s in steps] == [(1, 500), (1, 1000),
                                                                 (2, 500), (2, 1000)], steps
    for s in steps:
        assert s["online"] > 0 and 0 < s["fidelity"] <= 1.5, s
        assert s["verdict"] in ("pass", "fail") and s["generators"] == 1, s
        assert s["kernel_drops"]["tcpcopy"] is not None, s
        # --workers 1: one process; --workers 2: the parent and two workers
        want = 1 if s["workers"] == 1 else 3
        assert len(s["cpu_s_procs"]["tcpcopy"]) == want, s
        assert len(s["cpu_s_procs"]["intercept"]) == want, s
    assert [(x["workers"], x["mode"]) for x in doc["summary"]] == [(1, "keepalive"),
                                                                   (2, "keepalive")]
    assert "not pinned" in doc["layout"]["2"]
    assert "highest rate copied" in res.stdout
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"lc-{prefix}" not in left, left


def test_engine_bench_bad_worker_flags_exit_2() -> None:
    """A bad combination of our per-daemon flags is one error line and exit 2 (no lab)."""
    for extra, needle in (
            (["--ours-workers", "2", "--ours-tcpcopy-args", "--workers 3"], "--ours-workers"),
            (["--ours-tcpcopy-args", "--workers 2 --intercept-workers 2"], "must be equal")):
        res = subprocess.run([sys.executable, str(REPO / "bench" / "engine_bench.py"),
                              "--quick", *extra], capture_output=True, text=True, timeout=60,
                             cwd=str(REPO))
        assert res.returncode == 2, (extra, res.stderr)
        assert needle in res.stderr.splitlines()[-1] and "Traceback" not in res.stderr, res.stderr
