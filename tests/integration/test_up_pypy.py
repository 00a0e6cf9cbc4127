"""`labctl up` with `engine.runtime: pypy3`: both daemons run under PyPy (the lab's hosts share
this machine's filesystem, so its pypy3 is theirs; scripts/install.sh installs it), copy the
traffic end to end, `status` says pypy3, and `down` restores everything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_up_down_helpers import (
    labctl,
    ns_run,
    snapshot,
    tagged,
    write_inventory,
)

pytestmark = pytest.mark.integration

REQUESTS = 1000
MIN_RATIO = 0.999


def _pypy3_runtime(text: str) -> str:
    assert "datalink: false" in text
    return text.replace("datalink: false", "datalink: false, runtime: pypy3")


def _engine_processes(info: Any, role: str) -> dict[str, str]:
    """{tool: the executable's real path} of the engine daemons in `role`'s namespace."""
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
                    out[tool] = exe
    return out


def _copies(info: Any, prefix: str) -> int:
    log = Path(info.hosts["target"].access_log)
    return sum(1 for ln in log.read_text().splitlines() if ln.startswith(prefix))


def _wait_copies(info: Any, prefix: str, want: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while _copies(info, prefix) < want and time.monotonic() < deadline:
        time.sleep(0.25)
    return _copies(info, prefix)


def test_up_with_pypy3_copies_traffic_and_status_says_pypy3(lab: Any, tmp_path: Path) -> None:
    if shutil.which("pypy3") is None:
        pytest.fail("pypy3 is not installed on this machine: run `bash scripts/install.sh`",
                    pytrace=False)
    inv = write_inventory(lab, tmp_path, edit=_pypy3_runtime)
    before = snapshot(lab)
    plan = labctl(tmp_path, "plan", str(inv))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = " ".join(plan.stdout.split())
    assert "start tcpcopy under pypy3" in shown and "start intercept under pypy3" in shown, shown
    up = labctl(tmp_path, "up", str(inv))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        st = labctl(tmp_path, "status", "--json")
        assert st.returncode == 0, st.stderr
        daemons = {d["name"]: d for h in json.loads(st.stdout)["hosts"] for d in h["daemons"]}
        assert {n: (d["runtime"], d["alive"]) for n, d in daemons.items()} == {
            "tcpcopy": ("pypy3", True), "intercept": ("pypy3", True)}
        # ... and the processes really are PyPy (not a python3 that was told "pypy3")
        running = {**_engine_processes(lab, "online"), **_engine_processes(lab, "assistant")}
        assert set(running) == {"tcpcopy", "intercept"}, running
        assert all("pypy" in exe for exe in running.values()), running

        out = subprocess.run(
            [*lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
             f"http://{lab.hosts['online'].address}", "--requests", str(REQUESTS),
             "--mode", "mixed", "--connections", "4", "--json"],
            capture_output=True, text=True, timeout=300, check=True)
        sent = int(json.loads(out.stdout)["sent"])
        assert sent == REQUESTS
        prefix = str(lab.fake_pool).rsplit(".", 1)[0] + "."
        copied = _wait_copies(lab, prefix, sent)
        assert copied >= MIN_RATIO * sent, f"{copied} of {sent} requests copied under pypy3"
    finally:
        down = labctl(tmp_path, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert snapshot(lab) == before
    assert tagged(lab) == []
