"""engine/rollback.py: the on-host dead-man timer, run for real on local files (no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine import rollback

ROOT = Path(__file__).resolve().parents[2]


def _journal(tmp: Path) -> Path:
    entries = [
        {"step": "s1", "status": "applied", "undo": [["rm", "-f", str(tmp / "a")]], "probe": None},
        {"step": "s2", "status": "noop", "undo": [["rm", "-f", str(tmp / "keep")]], "probe": None},
        {"step": "s3", "status": "planned", "undo": [["rm", "-f", str(tmp / "b")]],
         "probe": ["test", "-e", str(tmp / "b")]},
        {"step": "s4", "status": "planned", "undo": [["false"]],
         "probe": ["test", "-e", str(tmp / "never")]},
    ]
    for name in ("a", "b", "keep"):
        (tmp / name).write_text("x")
    path = tmp / "journal.json"
    path.write_text(json.dumps({"state": "applying", "entries": entries}))
    return path


def test_roll_back_undoes_in_place_entries_newest_first(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    count = rollback.roll_back(str(path), log_file=str(tmp_path / "log"))
    data = json.loads(path.read_text())
    assert count == 3
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert (tmp_path / "keep").exists()  # noop entries are never undone
    assert [e["status"] for e in data["entries"]] == ["undone", "noop", "undone", "undone"]
    assert "not in place" in data["entries"][3]["reason"]
    assert data["state"] == "rolled_back" and data["rolled_back_by"] == "deadman"


def test_undo_failure_is_recorded_not_raised(tmp_path: Path) -> None:
    entry = {"step": "x", "undo": [["false"], ["sh-does-not-exist-xyz"]], "probe": None}
    reason = rollback.undo_entry(entry)
    assert "with errors" in reason and "`false` exited 1" in reason


def _start(tmp: Path, after: float) -> int:
    path = _journal(tmp)
    out = subprocess.run(
        [sys.executable, "-m", "engine", "rollback", "--journal", str(path), "--after", str(after),
         "--confirm-file", str(tmp / "confirm"), "--pid-file", str(tmp / "pid"),
         "--log-file", str(tmp / "log"), "--detach"],
        cwd=ROOT, capture_output=True, text=True, timeout=10, check=True,
    )
    pid = int(out.stdout.strip())
    assert (tmp / "pid").read_text().strip() == str(pid)  # pidfile exists when arming returns
    return pid


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    raise AssertionError(f"rollback pid {pid} still running after {timeout}s")


def test_detached_timer_fires_when_not_confirmed(tmp_path: Path) -> None:
    pid = _start(tmp_path, 0.5)
    _wait_gone(pid, 10)
    data = json.loads((tmp_path / "journal.json").read_text())
    assert data["state"] == "rolled_back"
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "pid").exists()


def test_confirm_file_cancels_the_rollback(tmp_path: Path) -> None:
    pid = _start(tmp_path, 30)
    (tmp_path / "confirm").write_text("")
    _wait_gone(pid, 5)
    assert (tmp_path / "a").exists()
    assert json.loads((tmp_path / "journal.json").read_text())["state"] == "applying"


def test_sigterm_before_deadline_disarms(tmp_path: Path) -> None:
    pid = _start(tmp_path, 30)
    os.kill(pid, 15)
    _wait_gone(pid, 5)
    assert (tmp_path / "a").exists()
    assert "disarmed" in (tmp_path / "log").read_text()


def test_a_pkill_that_finds_nothing_is_not_an_undo_error(tmp_path: Path) -> None:
    """A daemon (or its supervisor) that already stopped: pkill exits 1, nothing to undo."""
    pid_file = tmp_path / "tcpcopy.pid"
    pid_file.write_text("999999\n")
    gone = ["pkill", "-TERM", "-F", str(pid_file), "-f", "labctl-no-such-daemon-zz"]
    assert rollback.undo_entry({"undo": [gone]}) == "undone by dead-man timer"
    failing = [sys.executable, "-c", "raise SystemExit(1)"]
    assert "with errors" in rollback.undo_entry({"undo": [failing]})
