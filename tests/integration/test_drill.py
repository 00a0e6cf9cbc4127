"""`labctl drill` end to end through the real CLI entry point, in labs the drills build.

Each drill builds its own lab (name from $LABCTL_TEST_LAB_PREFIX), runs `up`, real client
traffic, the loss ledger, faults, `down`, and destroys the lab; the tests check the exit code,
the report files and that nothing of the lab is left behind.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.cli import main
from labctl.lab import destroy_lab, list_labs
from tests.integration.conftest import unique_lab_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUNBOOKS = Path(__file__).resolve().parent.parent.parent / "runbooks"


@pytest.fixture
def drill_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A lab name, a report dir and a private local state dir; the lab is destroyed anyway."""
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    name = unique_lab_name("h8")
    try:
        yield {"name": name, "reports": tmp_path / "report", "tmp": tmp_path}
    finally:
        destroy_lab(name)


def run_drill(runbook: Path, env: dict[str, Any],
              capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    try:
        main(["drill", str(runbook), "--lab-name", env["name"], "--report-dir",
              str(env["reports"]), "--json"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr().out
    return code, json.loads(out)


def assert_nothing_left(name: str) -> None:
    assert name not in list_labs()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"lc-{name}-" not in netns


def read_reports(env: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    d = env["reports"]
    return ((d / "report.md").read_text(), (d / "report.html").read_text(),
            json.loads((d / "result.json").read_text()))


def test_smoke_drill_passes_and_reports(drill_env: dict[str, Any],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_drill(RUNBOOKS / "smoke.yaml", drill_env, capsys)
    md, html, result = read_reports(drill_env)
    assert code == 0, out["reasons"]
    assert out["verdict"] == "PASSED" and result["verdict"] == "PASSED"
    assert [s["status"] for s in result["steps"]] == ["ok"] * 4
    traffic, verify = result["steps"][1], result["steps"][2]
    assert traffic["details"]["sent"] == 1000
    ledger = verify["ledger"]
    assert ledger["online_requests"] == 1000 and ledger["copy_ratio"] >= 0.995
    assert md.startswith("# Drill `smoke`: PASSED")
    assert "| 1000 (online 1000) |" in md.replace("online requests ", "")
    assert "**Engine counters**" in md and "requests_sent=" in md
    assert "PASSED" in html and "<script" not in html
    # the plots: the drill's traffic as one timeline and the counters of its verify step
    assert set(result["plots"]) == {"rate", "ratio", "latency", "status", "counters"}
    rate = result["plots"]["rate"]["data"]
    assert round(sum(rate["online_rps"]) * rate["bin_seconds"]) == 1000
    assert result["plots"]["latency"]["data"]["online"]["samples"] == 1000
    assert html.count("<svg") == 5 and "step starts" in html
    assert all("records" not in s for s in result["steps"])
    assert [c["action"] for c in result["cleanup"]] == ["destroy lab"]
    assert_nothing_left(drill_env["name"])


def test_intercept_outage_drill_holds_the_copy(drill_env: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12: intercept stopped for 3 s during 300 new connections/s; tcpcopy holds the
    sessions of the outage and resumes them, so >= 99 % of that run is still copied."""
    code, out = run_drill(RUNBOOKS / "intercept-outage.yaml", drill_env, capsys)
    md, _, result = read_reports(drill_env)
    steps = result["steps"]
    assert code == 0, out["reasons"]
    first, second = steps[7], steps[9]
    ledger = first["ledger"]
    assert ledger["online_requests"] == 3000
    assert ledger["copy_ratio"] >= 0.99, ledger["attribution"]
    assert all(c["ok"] for c in first["checks"])
    tcpcopy = next(d for d in ledger["daemons"] if d["tool"] == "tcpcopy")["counters"]
    # the outage was real, inside the run, and its sessions were held through it, then resumed
    assert tcpcopy["channel_reconnects"] >= 1
    assert tcpcopy["sessions_held"] >= 100 and tcpcopy["sessions_resumed"] >= 100, tcpcopy
    assert tcpcopy["sessions_hold_expired"] == 0 and tcpcopy["sessions_no_intercept"] == 0
    # after the restart a new burst is copied completely
    assert second["ledger"]["verdict"]["passed"] is True
    assert second["ledger"]["online_requests"] == 1000
    assert md.count("- [x] verdict: ledger verdict PASS (expected pass)") == 1  # the 2nd burst
    assert "(not checked: expect any)" in md    # the outage run: min_ratio 0.99 is its test
    assert "sessions_held=" in md and "sessions_resumed=" in md
    assert_nothing_left(drill_env["name"])


def test_unmet_expectation_exits_4_and_still_cleans_up(
        drill_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    runbook = drill_env["tmp"] / "wrong.yaml"
    runbook.write_text(
        "name: wrong-expectation\ninventory: {lab: {name: wrong}}\nsteps:\n  - up\n"
        "  - fault: {kind: drop, percent: 100}\n"  # a partial refusal is retried
        "  - traffic: {requests: 200, mode: new, rate: 400}\n"
        "  - verify: {expect: pass}\n")
    code, _ = run_drill(runbook, drill_env, capsys)
    md, _, result = read_reports(drill_env)
    assert code == 4
    assert result["verdict"] == "FAILED" and md.startswith("# Drill `wrong-expectation`: FAILED")
    verify = result["steps"][3]
    assert verify["status"] == "failed" and verify["checks"][0]["ok"] is False
    assert verify["ledger"]["attribution"]["missing"] > 0
    # no `down` step in the runbook: cleanup reverted the fault, ran down, destroyed the lab
    assert [c["action"] for c in result["cleanup"]] == ["revert drop", "down", "destroy lab"]
    assert all(c["ok"] for c in result["cleanup"]), result["cleanup"]
    assert_nothing_left(drill_env["name"])


def test_target_faults_drill(drill_env: dict[str, Any],
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Frozen target: nothing lost. Missing return route: the ledger fails and blames the
    sessions that never got a SYN-ACK, from counters taken since the previous verify (not
    since tcpcopy started: the earlier 1,200 sent requests must not count)."""
    code, out = run_drill(RUNBOOKS / "target-faults.yaml", drill_env, capsys)
    md, _, result = read_reports(drill_env)
    steps = result["steps"]
    assert code == 0, out["reasons"]
    stalled, no_route, restored = steps[7], steps[10], steps[13]
    assert stalled["ledger"]["verdict"]["passed"] is True
    assert stalled["ledger"]["online_requests"] == 1200
    assert stalled["ledger"]["copy_ratio"] >= 0.999
    att = no_route["ledger"]["attribution"]
    session = sum(b["requests"] for b in att["buckets"] if b["name"] == "session")
    assert att["missing"] == 600 and session >= 540, att      # 600 in every run so far
    tcpcopy = next(d for d in no_route["ledger"]["daemons"] if d["tool"] == "tcpcopy")
    assert tcpcopy["baseline_at"] is not None
    assert tcpcopy["counters"]["requests_sent"] == 0, tcpcopy["counters"]
    assert 540 <= tcpcopy["counters"]["sessions_no_synack"] <= 600, tcpcopy["counters"]
    assert restored["ledger"]["verdict"]["passed"] is True
    assert "tcpcopy (since the mark)" in md
    assert_nothing_left(drill_env["name"])


def test_amplify_drill(drill_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """-r 50 -n 2: the target sees about as many requests as online (expected ratio 1.0), and
    the note on kept SYNs is a sane percentage."""
    code, out = run_drill(RUNBOOKS / "amplify.yaml", drill_env, capsys)
    _, _, result = read_reports(drill_env)
    assert code == 0, out["reasons"]
    ledger = result["steps"][2]["ledger"]
    assert ledger["expected_ratio"] == pytest.approx(1.0)
    assert 0.85 <= ledger["copy_ratio"] <= 1.15, ledger["copy_ratio"]
    kept = [n for n in ledger["notes"] if n.startswith("tcpcopy kept ")]
    assert kept and 30.0 <= float(kept[0].split()[2]) <= 70.0, kept
    assert_nothing_left(drill_env["name"])


def test_netem_drill(drill_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """50 ms (then 50 ms + 1 % loss) on the copy path only: every copy arrives, the target's
    median response time seen by tcpcopy shifts by the delay (the runbook's target_p50_ms
    checks), the online server's does not, and the fault says which mechanism it used."""
    code, out = run_drill(RUNBOOKS / "netem.yaml", drill_env, capsys)
    md, _, result = read_reports(drill_env)
    assert code == 0, out["reasons"]
    steps = result["steps"]
    plain, delayed, lossy = steps[2], steps[5], steps[9]
    for step in (plain, delayed, lossy):
        assert step["ledger"]["copy_ratio"] >= 0.999, step["ledger"]["copy_ratio"]
        assert step["ledger"]["latency_online"]["p99"] < 0.02        # online: untouched
    assert all(c["ok"] for s in (plain, delayed, lossy) for c in s["checks"])
    assert "mechanism: engine" in md and "no sch_netem" in md
    assert_nothing_left(drill_env["name"])
