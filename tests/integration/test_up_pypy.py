"""`labctl up` with `engine.runtime: pypy3`: both daemons run under PyPy (the lab's hosts share
this machine's filesystem, so its pypy3 is theirs; scripts/install.sh installs it), copy the
traffic end to end, `status` says pypy3, and `down` restores everything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_up_down_helpers import (
    copy_round,
    daemon_status,
    labctl,
    ns_run,
    up_then_down,
    write_inventory,
)

pytestmark = pytest.mark.integration

REQUESTS = 1000
MIN_RATIO = 0.999


def _pypy3_runtime(text: str) -> str:
    assert "datalink: false" in text
    return text.replace("datalink: false", "datalink: false, runtime: pypy3")


def _engine_processes(info: Any, role: str, what: str = "exe") -> dict[str, str]:
    """{tool: the executable's real path} of the engine daemons in `role`'s namespace
    (`what="gc"`: their PYPY_GC_NURSERY instead, "" when their environment has none)."""
    out: dict[str, str] = {}
    for pid in ns_run(info, role, "ip", "netns", "pids", info.hosts[role].netns).split():
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        text = [w.decode(errors="replace") for w in words]
        if any(w.endswith("labctl-engine.pyz") for w in text):
            for tool in ("tcpcopy", "intercept"):
                if tool in text:
                    out[tool] = exe if what == "exe" else _gc_nursery(pid)
    return out


def _gc_nursery(pid: str) -> str:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    for item in env:
        if item.startswith(b"PYPY_GC_NURSERY="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return ""


def test_up_with_pypy3_copies_traffic_and_status_says_pypy3(lab: Any, tmp_path: Path) -> None:
    if shutil.which("pypy3") is None:
        pytest.fail("pypy3 is not installed on this machine: run `bash scripts/install.sh`",
                    pytrace=False)
    inv = write_inventory(lab, tmp_path, edit=_pypy3_runtime)
    plan = labctl(tmp_path, "plan", str(inv))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = " ".join(plan.stdout.split())
    assert "start tcpcopy under pypy3" in shown and "start intercept under pypy3" in shown, shown
    with up_then_down(lab, tmp_path, inv):
        daemons = daemon_status(tmp_path)
        assert {n: (d["runtime"], d["alive"]) for n, d in daemons.items()} == {
            "tcpcopy": ("pypy3", True), "intercept": ("pypy3", True)}
        # ... and the processes really are PyPy (not a python3 that was told "pypy3")
        running = {**_engine_processes(lab, "online"), **_engine_processes(lab, "assistant")}
        assert set(running) == {"tcpcopy", "intercept"}, running
        assert all("pypy" in exe for exe in running.values()), running
        # ... with the small nursery they give themselves (engine.pypygc, RELIABILITY P2)
        nursery = {**_engine_processes(lab, "online", "gc"),
                   **_engine_processes(lab, "assistant", "gc")}
        assert nursery == {"tcpcopy": "4MB", "intercept": "4MB"}, nursery
        assert copy_round(lab, REQUESTS, MIN_RATIO) == REQUESTS
