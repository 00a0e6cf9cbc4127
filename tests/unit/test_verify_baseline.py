"""Engine counters relative to the snapshot taken with the log marks (labctl.verify.baseline),
and the snapshot's round trip through the marks file."""

from __future__ import annotations

from pathlib import Path

from labctl.verify import baseline as vb
from labctl.verify import fetch as V
from labctl.verify.types import DaemonStats


def d(tool: str = "tcpcopy", started: float | None = 100.0, **counters: int) -> DaemonStats:
    return DaemonStats("online", tool, "running", counters, 200.0, "", started)


def test_same_run_is_subtracted() -> None:
    base = vb.snapshot([d(requests_sent=1200, sessions_no_synack=0, captured=5000)])
    now = vb.relative([d(requests_sent=1200, sessions_no_synack=600, captured=7000)], base, 150.0)
    assert dict(now[0].counters) == {"requests_sent": 0, "sessions_no_synack": 600,
                                     "captured": 2000}
    assert now[0].baseline_at == 150.0


def test_restarted_daemon_is_taken_as_is() -> None:
    base = vb.snapshot([d("intercept", started=100.0, resp_routed=900)])
    again = d("intercept", started=300.0, resp_routed=40)
    assert vb.relative([again], base, 150.0) == [again]
    # no start time in the stats, but a counter went down: also a restart
    base = vb.snapshot([d("intercept", started=None, resp_routed=900)])
    lower = d("intercept", started=None, resp_routed=40)
    assert vb.relative([lower], base, 150.0) == [lower]


def test_unknown_daemon_and_new_counters() -> None:
    base = vb.snapshot([d(requests_sent=5)])
    other = DaemonStats("assistant", "intercept", "running", {"resp_routed": 3}, None, "", 1.0)
    out = vb.relative([d(requests_sent=7, send_errors=2), other], base, 1.0)
    assert dict(out[0].counters) == {"requests_sent": 2, "send_errors": 2}
    assert out[1] is other


def test_load_ignores_junk() -> None:
    assert vb.load(None) == {} and vb.load([1]) == {}
    assert vb.load({"a/b": {"counters": {"x": 1, "y": "z"}, "started_at": "no"},
                    "c/d": "junk"}) == {"a/b": {"started_at": None, "counters": {"x": 1}}}


def test_marks_round_trip_with_engine(tmp_path: Path) -> None:
    marks = V.Marks("lab1", 5.0, [V.LogMark("online", "/log", 10, 2)], {"online": 3},
                    vb.snapshot([d(requests_sent=9)]))
    V.save_marks(marks, tmp_path)
    back = V.load_marks("lab1", tmp_path)
    assert back is not None and back.engine == {"online/tcpcopy": {
        "started_at": 100.0, "counters": {"requests_sent": 9}}}
