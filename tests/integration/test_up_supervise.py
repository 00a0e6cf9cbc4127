"""`labctl up --supervise` in the lab (hot backup): tcpcopy killed with SIGKILL twice and
intercept once while paced new connections flow (200 req/s), and again with `engine.workers: 2`
killing one worker each time: each restarted within 3 s by the engine's supervisor (the lab
hosts have no systemd), the requests outside the outage windows copied (>= 99.9 %), the
restarts counted by `status --json` and `--prometheus`, and `down` stops the supervisors first
and leaves no process, route or rule behind; the dead-man's undo stops a supervisor before its
daemon (no restart).

The short CI form of bench/supervise_soak.py (which it runs for 30 s instead of 10 minutes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from bench.supervise_soak import report, soak
from tests.integration.test_up_down_helpers import labctl, snapshot, tagged, write_inventory

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", [1, 2], ids=["daemon", "one-of-two-workers"])
def test_supervised_daemons_survive_sigkill_and_down_ends_them(lab: Any, tmp_path: Path,
                                                                workers: int) -> None:
    """workers=2: each kill is of one worker, mid-copy; the daemon stops its other worker and
    the supervisor restarts it whole (no orphan worker: `left_processes` checks them too)."""
    result = soak(lab, tmp_path, duration=30.0, rate=200.0, say=lambda msg: None,
                  workers=workers)
    text = report(result) + "\n" + json.dumps(result, indent=1, sort_keys=True)
    assert all(result["supervisors"].values()), text        # both under the engine's supervisor
    assert [k["daemon"] for k in result["kills"]] == ["tcpcopy", "tcpcopy", "intercept"], text
    assert all(k["restart_s"] < 3.0 for k in result["kills"]), text
    copy = result["copy"]
    assert copy["sent"] >= 0.9 * 30 * 200 and copy["after_last_restore"] > 0, text
    assert copy["outside_ratio"] is not None and copy["outside_ratio"] >= 0.999, text
    assert result["status_restarts"] == {"tcpcopy": 2, "intercept": 1}, text
    assert any(ln.startswith("tcpcopy_restarts{") and ln.endswith(" 2")
               for ln in result["prometheus_restarts"]), text
    assert result["down_ok"], text
    assert result["left_processes"] == [] and result["left_tagged"] == [], text
    assert result["restored"], text


def _running(pid_file: Path, *words: str) -> Optional[int]:
    """The pid in `pid_file` if that process runs and its command line has every word."""
    try:
        pid = int(pid_file.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if all(w in cmd for w in words) else None


@pytest.mark.timeout(600)
def test_dead_man_stops_the_supervisor_before_the_daemon(lab: Any, tmp_path: Path) -> None:
    """two-server (online's DROP rule is guarded, so online gets a dead-man timer): labctl
    killed right after starting the supervised daemons; the timer fires, stops tcpcopy's
    supervisor first and then tcpcopy, which is not restarted; `down` restores the rest."""
    inv = write_inventory(lab, tmp_path, "two-server")
    before = snapshot(lab)
    up = labctl(tmp_path, "up", "--supervise", str(inv), "--deadman", "25",
                hooks=("--kill-after", "daemons"), timeout=300)
    assert up.returncode == -9, up.stdout + up.stderr
    hdir = next(p.parent for p in (Path(lab.dir) / "state").glob("*/*/tcpcopy.stats"))
    sup_pid, sup_state = hdir / "tcpcopy.supervisor.pid", str(hdir / "tcpcopy.supervisor.json")
    stats = str(hdir / "tcpcopy.stats")
    assert _running(sup_pid, "supervise", sup_state), "tcpcopy is not supervised"
    assert _running(hdir / "tcpcopy.pid", "tcpcopy", stats)
    journal = hdir / "journal.json"
    armed_at = float(json.loads(journal.read_text())["deadman"]["armed_at"])
    deadline = armed_at + 25 + 30
    while json.loads(journal.read_text()).get("state") != "rolled_back":
        assert time.time() < deadline, "the dead-man did not roll online back"
        time.sleep(0.2)
    deadline = time.monotonic() + 15
    while _running(sup_pid, "supervise", sup_state) or _running(hdir / "tcpcopy.pid",
                                                                "tcpcopy", stats):
        assert time.monotonic() < deadline, "tcpcopy or its supervisor outlived the dead-man"
        time.sleep(0.1)
    state = json.loads(Path(sup_state).read_text())
    assert state["state"] == "stopped" and state["restarts"] == 0, state
    entry = next(e for e in json.loads(journal.read_text())["entries"]
                 if e["step"] == "daemon:tcpcopy")
    assert entry["status"] == "undone" and entry["reason"] == "undone by dead-man timer", entry
    down = labctl(tmp_path, "down", str(inv))
    assert down.returncode == 0, down.stdout + down.stderr
    assert snapshot(lab) == before
    assert tagged(lab) == []
