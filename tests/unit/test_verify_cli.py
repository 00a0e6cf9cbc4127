"""`labctl verify` / `labctl diagnose` at the CLI edge: missing inventory or lab, the JSON
documents' stable shape, and how a watch ends."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from labctl.cli import main
from labctl.cli import verify as cv
from labctl.cli.render import verify as rv
from labctl.verify import ledger as L
from labctl.verify.logparse import LogRecord
from labctl.verify.tree import Diagnosis, Step
from tests.unit.test_ledger_fetch import INVENTORY

T0 = 1_800_000_000.0


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.mark.parametrize("command", ["verify", "diagnose"])
def test_no_inventory_and_no_lab_is_a_clear_usage_error(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "empty"))
    code, out, err = run(capsys, command)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {command} needs an inventory: no inventory given and 0 labs")
    assert str(tmp_path / "empty") in err  # where it looked
    assert f"hint: pass the inventory (`labctl {command} inventories/local.yaml`)" in err
    assert "labctl up" in err and "Traceback" not in err


def test_inventory_without_up_names_the_lab_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    code, _out, err = run(capsys, "verify", str(inv), "--since-up")
    assert code == 2
    assert "lab 'h6u' has no record of a finished `labctl up` here" in err
    assert "hint: run `labctl up` first, or give --window 60s" in err


def test_missing_inventory_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    code, _out, err = run(capsys, "verify", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err and "Traceback" not in err


def test_watch_with_json_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "verify", "--watch", "--json")
    assert code == 2 and "--watch" in err


# ---------------------------------------------------------------- JSON shape


def _report() -> L.LedgerReport:
    on = [LogRecord(T0 + i, "10.78.1.10", "GET", f"/p{i % 3}", 200, 10, 100, None, 0.01, i, 1)
          for i in range(30)]
    tg = [LogRecord((r.time or 0) + 0.1, "10.79.1.5", r.method, r.uri, 200 if i % 5 else 503,
                    10, 100, None, 0.02, i, 1) for i, r in enumerate(on) if i % 6]
    tg.append(LogRecord(T0 + 3, "10.78.1.99", "GET", "/leak", 200, 1, 1, None, 0.0, None, None))
    daemons = [L.DaemonStats("online", "tcpcopy", "running", {"requests_sent": 28},
                             T0 + 30, ""),
               L.DaemonStats("assistant", "intercept", "stale", {}, None, "old stats")]
    return L.build(L.LedgerInput(
        {"online": on}, tg, window=(T0, T0 + 60), allowed_sources=["10.79.1.0/24"],
        daemons=daemons, conntrack=[L.Conntrack("target", 10, 1000, 4)],
        malformed={"target:/log": 2}))


NUM = (int, float)
OPT_NUM = (int, float, type(None))
VERIFY_SHAPE: dict[str, Any] = {
    "schema": str, "online_requests": int, "online_by_host": dict, "target_requests": int,
    "target_matched": int, "target_excess": int, "expected_ratio": NUM,
    "expected_requests": NUM, "copy_ratio": OPT_NUM, "loss_pct": NUM, "excess_pct": NUM,
    "worst_endpoints": list, "status_online": dict, "status_target": dict,
    "latency_online": dict, "latency_target": dict, "latency_diff": dict, "leaks": int,
    "leak_sources": dict, "conntrack": list, "daemons": list, "attribution": dict,
    "verdict": dict, "malformed": dict, "window": (list, type(None)), "notes": list,
    "by_mapping": list, "selection": (dict, type(None)), "target_errors": dict,
}


def _shape(doc: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    assert set(doc) == set(shape), (where, set(doc) ^ set(shape))
    for key, kind in shape.items():
        assert isinstance(doc[key], kind), (where, key, doc[key])
        assert not isinstance(doc[key], bool) or kind is bool, (where, key)


def test_verify_json_top_level_shape() -> None:
    doc = json.loads(rv.verify_json(_report()))
    _shape(doc, VERIFY_SHAPE, "verify")
    assert doc["schema"] == "labctl.verify/1"
    _shape(doc["verdict"], {"passed": bool, "reasons": list, "tolerance": NUM,
                            "inconclusive": bool}, "verdict")
    _shape(doc["attribution"], {"missing": int, "buckets": list, "unexplained": int}, "att")
    for b in doc["attribution"]["buckets"]:
        _shape(b, {"name": str, "requests": int, "evidence": str}, "bucket")
    for name in ("latency_online", "latency_target", "latency_diff"):
        _shape(doc[name], {"p50": OPT_NUM, "p90": OPT_NUM, "p99": OPT_NUM, "samples": int}, name)
    for d in doc["daemons"]:
        _shape(d, {"host": str, "tool": str, "state": str, "counters": dict,
                   "updated_at": OPT_NUM, "detail": str, "started_at": OPT_NUM,
                   "baseline_at": OPT_NUM}, "daemon")
    for c in doc["conntrack"]:
        _shape(c, {"host": str, "count": OPT_NUM, "max": OPT_NUM, "count_at_up": OPT_NUM}, "ct")
    for e in doc["worst_endpoints"]:
        _shape(e, {"endpoint": str, "online": int, "target": int, "expected": NUM,
                   "missing": int, "loss_pct": NUM}, "endpoint")
    assert doc["status_target"] == {"200": 20, "503": 5}  # status codes as string keys
    assert doc["window"] == [T0, T0 + 60] and doc["leaks"] == 1
    assert doc["verdict"]["passed"] is False and doc["malformed"] == {"target:/log": 2}


def test_diagnose_json_top_level_shape() -> None:
    ok = Step("the engine daemons run", "ok", "tcpcopy@online")
    bad = Step("copies reach the target", "broken", "0 SYNs", "check the route")
    for diag, broken in ((Diagnosis([ok, bad], ["n"]), bad), (Diagnosis([ok]), None)):
        doc = json.loads(rv.diagnose_json(diag))
        _shape(doc, {"schema": str, "steps": list, "broken": (dict, type(None)),
                     "notes": list}, "diagnose")
        assert doc["schema"] == "labctl.diagnose/1"
        for s in doc["steps"]:
            _shape(s, {"question": str, "status": str, "evidence": str, "fix": str}, "step")
        assert doc["broken"] == (None if broken is None else
                                 {"question": broken.question, "status": "broken",
                                  "evidence": broken.evidence, "fix": broken.fix})


# ---------------------------------------------------------------- watch


class FakeWatch:
    """Refresh k gives reports[k] (reports[0] is the first verify's); Ctrl-C on call `stop_at`."""

    def __init__(self, reports: list[L.LedgerReport], stop_at: int) -> None:
        self.reports, self.stop_at, self.calls = reports, stop_at, 0

    def refresh(self) -> L.LedgerReport:
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.reports[self.calls]


def _with(online: int, passed: bool) -> L.LedgerReport:
    base = _report()
    verdict = L.Verdict(passed, [] if passed else ["copy ratio off"], 0.005)
    return L.LedgerReport(**{**base.__dict__, "online_requests": online, "verdict": verdict})


@pytest.mark.parametrize("terminal", [False, True])
def test_watch_refreshes_until_ctrl_c_and_returns_the_last_report(
        terminal: bool, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cv.time, "sleep", lambda s: None)
    reports = [_with(n, n == 300) for n in (100, 200, 300)]
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=160)
    session = FakeWatch(reports, stop_at=2)
    view = cv._View(session, several=False)  # type: ignore[arg-type]
    last = cv._watch(view, reports[0], console, 1.0)
    assert last is reports[1] and session.calls == 2
    text = out.getvalue()
    assert "online requests" in text and "100" in text and "200" in text
    assert "watch stopped after 2 refreshes: last verdict FAIL" in capsys.readouterr().err
    if not terminal:  # into a pipe: every refresh printed in full, one after the other
        assert text.count("online requests") == 2 and "refresh 2" in text
