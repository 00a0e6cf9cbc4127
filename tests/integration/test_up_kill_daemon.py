"""RELIABILITY R1 (daemons) and R4 (two `up`s at once) in the local lab, with the real CLI.

- `kill -9` of tcpcopy (and, in another run, of intercept) after `up`: `status` reports it dead
  (exit 0, no traceback), `down` exits 0 and restores routes and iptables exactly, a second
  `down` is a no-op. Unsupervised default: nothing restarts the daemon.
- with `engine.workers: 2`, `kill -9` of one tcpcopy worker mid-copy: the daemon stops its other
  worker and exits (no orphan worker keeps capturing), `status` says `failed`, `down` restores
  everything.
- two `labctl up` started together on one lab: exactly one proceeds; the other is refused by
  the lock naming its holder, having changed nothing; `down` restores everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.supervise_soak import children
from tests.integration.test_up_down_helpers import (
    ROOT,
    copy_round,
    daemon_status,
    env_for,
    labctl,
    labctl_argv,
    pool_prefix,
    snapshot,
    tagged,
    up_then_down,
    wait_copies,
    write_inventory,
)

pytestmark = pytest.mark.integration


def gone(pid: int) -> bool:
    """The pid is no process any more (or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("victim", ["tcpcopy", "intercept"])
def test_kill_9_of_a_daemon_then_status_and_down(lab: Any, tmp_path: Path, victim: str) -> None:
    inv = write_inventory(lab, tmp_path)
    before = snapshot(lab)
    with up_then_down(lab, tmp_path, inv, str(inv)):
        copy_round(lab, 40, timeout=30)
        running = daemon_status(tmp_path)
        assert running["tcpcopy"]["alive"] and running["intercept"]["alive"]
        pid = int(running[victim]["pid"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not gone(pid):
            assert time.monotonic() < deadline, f"{victim} ({pid}) still there after SIGKILL"
            time.sleep(0.1)
        after = daemon_status(tmp_path)
        assert after[victim]["alive"] is False and after[victim]["state"] == "dead", after[victim]
        text = labctl(tmp_path, "status")
        assert text.returncode == 0 and "Traceback" not in text.stdout + text.stderr, text.stderr
        print(f"R1 kill -9 {victim}: status says alive={after[victim]['alive']} "
              f"state={after[victim]['state']!r}; the other: "
              f"alive={after['intercept' if victim == 'tcpcopy' else 'tcpcopy']['alive']}")
    again = labctl(tmp_path, "down", str(inv))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert snapshot(lab) == before


def test_kill_9_of_one_worker_mid_copy_ends_the_daemon_and_down_restores(
        lab: Any, tmp_path: Path) -> None:
    def edit(text: str) -> str:
        return text.replace("datalink: false", "datalink: false, workers: 2")

    inv = write_inventory(lab, tmp_path, edit=edit)
    before = snapshot(lab)
    with up_then_down(lab, tmp_path, inv, str(inv)):
        running = daemon_status(tmp_path)["tcpcopy"]
        assert running["alive"] and running["workers"] == 2, running
        parent = int(running["pid"])
        deadline = time.monotonic() + 20
        while len(workers := children(parent)) != 2:
            assert time.monotonic() < deadline, f"tcpcopy ({parent}) has workers {workers}"
            time.sleep(0.1)
        traffic = subprocess.Popen(       # mid-copy: requests flow while the worker dies
            [*lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
             f"http://{lab.hosts['online'].address}", "--requests", "400", "--rate", "100",
             "--mode", "new", "--connections", "4"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert wait_copies(lab, pool_prefix(lab), 50, timeout=30) >= 50
            os.kill(workers[-1], signal.SIGKILL)
            deadline = time.monotonic() + 30       # the other worker: SIGTERM, then 10 s grace
            while not all(gone(p) for p in (parent, *workers)):
                assert time.monotonic() < deadline, (
                    f"tcpcopy {parent} or a worker {workers} outlived the killed worker")
                time.sleep(0.1)
        finally:
            traffic.kill()
            traffic.wait(timeout=30)
        after = daemon_status(tmp_path)
        assert after["tcpcopy"]["alive"] is False and after["tcpcopy"]["state"] == "failed", (
            after["tcpcopy"])
        assert after["intercept"]["alive"]
        text = labctl(tmp_path, "status")
        assert text.returncode == 0 and "Traceback" not in text.stdout + text.stderr, text.stderr
        print(f"R1 kill -9 of tcpcopy worker {workers[-1]} mid-copy: parent {parent} and "
              f"worker {workers[0]} gone; status state={after['tcpcopy']['state']!r}")
    again = labctl(tmp_path, "down", str(inv))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert snapshot(lab) == before and tagged(lab) == []
    assert all(gone(p) for p in (parent, *workers))


def test_two_ups_at_once_one_proceeds_the_other_is_refused_by_the_lock(
        lab: Any, tmp_path: Path) -> None:
    inv = write_inventory(lab, tmp_path)
    before = snapshot(lab)
    env = env_for(tmp_path)
    procs = [subprocess.Popen([*labctl_argv(), "up", str(inv)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:  # only when communicate timed out
                p.kill()
                p.wait(timeout=30)
    codes = sorted(r[0] for r in results)
    both = "\n---\n".join(o + e for _, o, e in results)
    assert codes == [0, 1], both
    _, out, err = next(r for r in results if r[0] != 0)
    assert "another labctl (pid" in err and "holds the lock" in err, out + err
    holder = next(p.pid for p, r in zip(procs, results) if r[0] == 0)
    refused_pid = next(p.pid for p, r in zip(procs, results) if r[0] != 0)
    assert f"pid {holder} " in err, err  # the holder named, not itself
    assert f"pid {refused_pid} " not in err
    said = next(ln for ln in err.splitlines() if "holds the lock" in ln)
    print(f"R4 two ups at once: {holder} proceeded; {refused_pid} refused: {said.strip()[:200]}")
    running = daemon_status(tmp_path)  # the winner's lab is intact: nothing of it was undone
    assert running["tcpcopy"]["alive"] and running["intercept"]["alive"]
    copy_round(lab, 20, timeout=30)
    down = labctl(tmp_path, "down", str(inv))
    assert down.returncode == 0, down.stdout + down.stderr
    assert snapshot(lab) == before and tagged(lab) == []
