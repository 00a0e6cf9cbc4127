"""The dead-man rollback: with the SSH refusal bypassed (test-only hook), a route that cuts the
operator's SSH path makes `labctl up` give up on that host promptly (exit 1, naming the change
and when the host restores itself), and the host undoes it within its timer + 5 s."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_up_down_helpers import (
    env_for,
    hooked_argv,
    labctl,
    ns_run,
    snapshot,
    tagged,
    write_inventory,
)

pytestmark = pytest.mark.integration
TIMER = 20.0
GUARD = 5.0  # LABCTL_GUARD_TIMEOUT: how long a guarded change may stay unanswered


def ssh_ok(lab: Any, role: str) -> bool:
    host = lab.hosts[role]
    argv = ["ssh", "-i", str(lab.ssh_key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=1",
            "-p", str(host.ssh_port), f"root@{host.address}", "true"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=3, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _armed_at(tmp: Path, lab: Any) -> float:
    """When labctl armed the target's timer (wall clock), from the local journal copy."""
    path = tmp / "state" / lab.name / "target.journal.json"
    return float(json.loads(path.read_text())["deadman"]["armed_at"])


def test_deadman_restores_ssh_within_timer_plus_5s(lab: Any, tmp_path: Path) -> None:
    cut = str(lab.lab_net).replace(".0/24", ".0/28")  # holds the operator's 10.77.N.1
    inv = write_inventory(lab, tmp_path, edit=lambda t: t.replace(
        f"networks: [{lab.fake_pool}]", f"networks: [{lab.fake_pool}, {cut}]"))
    before = snapshot(lab)
    assert ssh_ok(lab, "target")
    # labctl must notice by itself that the route cut its SSH path (the command's answer never
    # comes back): it gives up on the target after the guard timeout and exits 1.
    proc = subprocess.Popen(
        [*hooked_argv("--allow-ssh-cut"), "up", str(inv), "--deadman", str(TIMER),
         "--guard-timeout", str(GUARD)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env_for(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while not ns_run(lab, "target", "ip", "route", "show", cut, "proto", "252").strip():
            assert proc.poll() is None, f"labctl up exited {proc.returncode} before the cut"
            assert time.monotonic() < deadline, "the cutting route never appeared"
            time.sleep(0.05)
        cut_at = time.time()
        out, err = proc.communicate(timeout=GUARD + 30)
        returned_at = time.time()
    finally:
        if proc.poll() is None:  # only when the assertion above failed
            proc.kill()
            proc.wait(timeout=30)
    armed_at = _armed_at(tmp_path, lab)
    assert proc.returncode == 1, out + err
    assert returned_at - cut_at < GUARD + 15, f"labctl took {returned_at - cut_at:.1f}s"
    assert "cut SSH" in err and "the dead-man rollback on the host restores it at" in err, err
    assert "on target" in err
    assert returned_at < armed_at + TIMER, "machine too slow: labctl outlived the timer"
    assert not ssh_ok(lab, "target"), "the route did not cut SSH; the test proves nothing"
    restored = None
    while time.time() < armed_at + TIMER + 5:
        if ssh_ok(lab, "target"):
            restored = time.time() - armed_at
            break
        time.sleep(0.3)
    assert restored is not None, f"SSH not restored within the timer ({TIMER:g}s) + 5s"
    print(f"R2 labctl gave up {returned_at - cut_at:.1f} s after the cut; SSH restored "
          f"{restored:.1f} s after the timer was armed (timer {TIMER:g} s, bound +5 s)")
    assert restored >= TIMER - 1  # it was the timer, not something else, that restored it
    # R3: `status` reports the host's own rollback (its journal, read over a new connection)
    st = labctl(tmp_path, "status", str(inv), "--json")
    assert st.returncode == 0 and "Traceback" not in st.stdout + st.stderr, st.stderr
    hosts = {h["host"]: h for h in json.loads(st.stdout)["hosts"]}
    states = {name: h["journal_state"] for name, h in hosts.items()}
    assert states["target"] == "rolled_back", states
    assert hosts["target"]["rolled_back_by"] == "deadman", hosts["target"]
    text = labctl(tmp_path, "status", str(inv))
    assert text.returncode == 0 and "rolled back" in text.stdout, text.stdout
    print(f"R3 status after the cut: journal states {states}")
    down = labctl(tmp_path, "down", str(inv))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "dead-man" in down.stdout
    assert snapshot(lab) == before and tagged(lab) == []
