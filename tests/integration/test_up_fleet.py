"""Sixteen online hosts feeding one target (issue 12), one lab built once for this module: `up`
starts 16 tcpcopy with disjoint `-c` pools, client traffic to every online host is copied
(`verify` PASS at >= 99.9 %), and `down` restores every host exactly (normalised routes and
iptables equal before/after); `up` and `down` wall times are printed. A second test breaks one
online host's tcpcopy start: `up` fails naming it, and every host is rolled back (root; own lab).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab, destroy_lab
from tests.integration.conftest import unique_lab_name
from tests.integration.copyrig import REPO
from tests.integration.test_up_down_helpers import (
    labctl,
    snapshot,
    tagged,
    verify_until,
    write_inventory,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ONLINE = 16
REQUESTS = 20          # per online host: small, the lab is heavy on a 2-core box


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabInfo]:
    """A lab with 16 online hosts, target and assistant (18 sshd, 17 nginx), built once."""
    name = unique_lab_name()
    try:
        info = build_lab(LabSpec(name=name, online_hosts=ONLINE))
        assert_routes_via_lab(info)
        yield info
    finally:
        destroy_lab(name)


def _onlines(info: LabInfo) -> list[str]:
    return [r for r in info.hosts if r.startswith("online")]


def _traffic_to_every_online_host(info: LabInfo) -> None:
    """REQUESTS mixed requests to each online host, all hosts at once (from the lab client)."""
    procs = {}
    for role in _onlines(info):
        url = f"http://{info.hosts[role].address}"
        procs[role] = subprocess.Popen(
            [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url", url,
             "--requests", str(REQUESTS), "--mode", "mixed", "--connections", "2", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    for role, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (role, err[-500:])
        res = json.loads(out.strip().splitlines()[-1])
        assert not res.get("errors"), (role, res)


def _pools(up_doc: dict[str, Any]) -> dict[str, set[str]]:
    out = {}
    for change in up_doc["plan"]["changes"]:
        if change["step"] == "daemon:tcpcopy":
            args = change["daemon"]["args"]
            out[change["host"]] = set(args[args.index("-c") + 1].split(","))
    return out


def test_sixteen_online_hosts_up_copy_verify_down(fleet: LabInfo, tmp_path: Path) -> None:
    info = fleet
    inv = write_inventory(info, tmp_path)
    before = snapshot(info)
    assert len(before) == ONLINE + 2

    t0 = time.monotonic()
    up = labctl(tmp_path, "up", str(inv), "--json", timeout=600)
    up_s = time.monotonic() - t0
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    doc = json.loads(up.stdout)
    started = {s["host"] for s in doc["steps"]
               if s["step"] == "daemon:tcpcopy" and s["status"] == "applied"}
    assert started == set(_onlines(info))
    pools = _pools(doc)
    assert set(pools) == started and all(pools.values())
    every = [a for p in pools.values() for a in p]
    assert len(every) == len(set(every)), "the online hosts' -c pools overlap"

    status = labctl(tmp_path, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    alive = {h["host"] for h in json.loads(status.stdout)["hosts"]
             for d in h["daemons"] if d["name"] == "tcpcopy" and d["alive"]}
    assert alive == started

    _traffic_to_every_online_host(info)
    want = ONLINE * REQUESTS
    ledger = verify_until(tmp_path, lambda d: d["online_requests"] == want
                          and d["verdict"]["passed"] and d["copy_ratio"] >= 0.999, timeout=60)
    assert ledger["online_requests"] == want, ledger["verdict"]
    assert ledger["verdict"]["passed"], ledger["verdict"]
    assert ledger["copy_ratio"] >= 0.999, ledger["copy_ratio"]

    t0 = time.monotonic()
    down = labctl(tmp_path, "down", str(inv), "--json", timeout=600)
    down_s = time.monotonic() - t0
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    assert tagged(info) == [] and snapshot(info) == before
    print(f"\nfleet of {ONLINE + 2} hosts: up {up_s:.2f}s, down {down_s:.2f}s, "
          f"verify copy ratio {ledger['copy_ratio']:.4f} of {want} requests")


def test_one_host_failing_rolls_back_every_host(fleet: LabInfo, tmp_path: Path) -> None:
    """A directory where online7's tcpcopy pid file goes: its start fails; `up` names that host
    and every host is rolled back (the 15 other tcpcopy and intercept stopped, the target's
    route removed), so routes and iptables are as before and nothing is tagged."""
    info = fleet
    inv = write_inventory(info, tmp_path)
    before = snapshot(info)
    hdir = info.dir / "state" / info.name / "online7"
    (hdir / "tcpcopy.pid").mkdir(parents=True)
    try:
        up = labctl(tmp_path, "up", str(inv), "--json", timeout=600)
    finally:
        (hdir / "tcpcopy.pid").rmdir()
    assert up.returncode != 0, up.stdout[-2000:]
    assert "online7" in up.stderr, up.stderr[-2000:]
    assert tagged(info) == [] and snapshot(info) == before
    status = labctl(tmp_path, "status", "--json")
    running = [(h["host"], d["name"]) for h in json.loads(status.stdout)["hosts"]
               for d in h["daemons"] if d["alive"]]
    assert running == []
    down = labctl(tmp_path, "down", str(inv), "--json", timeout=600)   # a no-op now
    assert down.returncode == 0, down.stdout[-2000:]
    assert snapshot(info) == before
