"""`kill -9` of labctl after each step of `up`, then `labctl down`: nothing left or changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_up_down_helpers import labctl, snapshot, tagged, write_inventory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def steps_of(lab: Any) -> list[str]:
    return ["connect", "facts", "checks", "plan", "lock", "ship", "journal", "deadman",
            f"change:route-{lab.fake_pool}", "changes", "daemon:intercept", "daemon:tcpcopy",
            "daemons", "confirm", "state"]


@pytest.mark.timeout(2700)  # 15 x (partial up + down); ~1 min each on a loaded 2-core box
def test_kill_9_after_every_step_then_down_restores(lab: Any, tmp_path: Path) -> None:
    inv = write_inventory(lab, tmp_path)
    before = snapshot(lab)
    problems = []
    for step in steps_of(lab):
        up = labctl(tmp_path, "up", str(inv), hooks=("--kill-after", step))
        if up.returncode != -9:
            problems.append(f"{step}: up exited {up.returncode}, not SIGKILL: {up.stderr[-300:]}")
        down = labctl(tmp_path, "down", str(inv))
        if down.returncode != 0:
            problems.append(f"{step}: down exited {down.returncode}: {down.stdout[-600:]}")
        if snapshot(lab) != before:
            problems.append(f"{step}: routes/iptables differ after down")
        left = tagged(lab)
        if left:
            problems.append(f"{step}: left behind {left}")
    assert problems == []
