"""Several targets in a lab with `target2` (`labctl lab up --targets 2`): `up` routes the fake
client network on both targets and gives tcpcopy one `-x` per target, so every client request
reaches each target; `verify` judges each target on its own; `status` lists both; `down`
restores every host (root; own lab)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.integration.copyrig import REPO, log_requests, wait_for
from tests.integration.test_up_down_helpers import (
    labctl,
    ns_run,
    snapshot,
    tagged,
    verify_until,
    write_inventory,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REQUESTS = 1000


def _traffic(info: Any, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
         f"http://{info.hosts['online'].address}", "--requests", str(n), "--mode", "mixed",
         "--connections", "4", "--json"],
        capture_output=True, text=True, timeout=120, check=True, cwd=str(REPO))
    return dict(json.loads(out.stdout))


def _copies(info: Any, role: str) -> int:
    prefix = info.fake_pool.rsplit(".", 1)[0] + "."
    return sum(log_requests(info.hosts[role].access_log, prefix).values())


def _verify(tmp: Path, *args: str) -> dict[str, Any]:
    res = labctl(tmp, "verify", "--json", *args)
    assert res.returncode in (0, 3), res.stdout + res.stderr
    return dict(json.loads(res.stdout))


def test_two_targets_each_get_every_request(lab_factory: Callable[..., Any],
                                            tmp_path: Path) -> None:
    info = lab_factory(targets=2)
    inv = write_inventory(info, tmp_path)
    before = snapshot(info)
    assert set(before) == {"online", "target", "target2", "assistant"}
    plan = labctl(tmp_path, "plan", str(inv))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    t1, t2 = info.hosts["target"].address, info.hosts["target2"].address
    assert f"80-{t1}:80,80-{t2}:80" in plan.stdout.replace("\n", "")
    up = labctl(tmp_path, "up", str(inv))
    assert up.returncode == 0, up.stdout + up.stderr
    for role in ("target", "target2"):
        route = ns_run(info, role, "ip", "route", "show", "proto", "252")
        assert f"{info.fake_pool} via {info.hosts['assistant'].address}" in route, (role, route)

    sent = _traffic(info, REQUESTS)
    assert not sent.get("errors"), sent
    want = int(REQUESTS * 0.999)
    for role in ("target", "target2"):
        got = wait_for(lambda r=role: _copies(info, r) >= want and _copies(info, r), 30,
                       f"{want} copies on {role}")
        assert got >= want, (role, got)

    doc = verify_until(tmp_path, lambda d: d["verdict"]["passed"] and all(
        t["copy_ratio"] >= 0.999 for t in d["targets"]))
    assert doc["schema"] == "labctl.verify-targets/1"
    assert doc["verdict"]["passed"], doc["verdict"]
    by_name = {t["name"]: t for t in doc["targets"]}
    assert [(t["name"], t["role"]) for t in doc["targets"]] == [
        ("target", "baseline"), ("target2", "candidate")]
    for t in by_name.values():
        assert t["verdict"]["passed"], (t["name"], t["verdict"])
        assert t["online_requests"] >= REQUESTS
        assert t["copy_ratio"] == pytest.approx(1.0, abs=0.001)
    one = _verify(tmp_path, "--target", "target2")       # that target alone, single-target shape
    assert one["schema"] == "labctl.verify/1" and one["verdict"]["passed"]
    assert one["target_matched"] >= want
    text = labctl(tmp_path, "verify")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "2 of 2 targets pass" in text.stdout

    st = labctl(tmp_path, "status", "--json")
    assert st.returncode == 0, st.stderr
    roles = {h["host"]: h["role"] for h in json.loads(st.stdout)["hosts"]}
    assert roles["target"] == "target (baseline)" and roles["target2"] == "target (candidate)"

    down = labctl(tmp_path, "down", str(inv))
    assert down.returncode == 0, down.stdout + down.stderr
    assert tagged(info) == [] and snapshot(info) == before


def test_cli_lab_up_targets_2_status_down(tmp_path: Path) -> None:
    from labctl.lab.net import existing_namespaces
    from tests.integration.conftest import unique_lab_name

    name = unique_lab_name()
    try:
        up = labctl(tmp_path, "lab", "up", "--name", name, "--targets", "2", "--json")
        assert up.returncode == 0, up.stderr
        doc = json.loads(up.stdout)
        t2 = doc["hosts"]["target2"]
        assert t2["netns"] == f"lc-{name}-target2" and t2["address"].endswith(".21")
        inventory = Path(doc["inventories"]["three-server"]).read_text()
        assert "  targets:\n" in inventory and "role: candidate" in inventory
        st = labctl(tmp_path, "lab", "status", "--name", name, "--json")
        assert st.returncode == 0, st.stderr
        hosts = {h["role"]: h for h in json.loads(st.stdout)["hosts"]}
        assert set(hosts) == {"client", "online", "target", "target2", "assistant"}
        assert hosts["target2"]["up"] and {s["name"] for s in hosts["target2"]["services"]} == {
            "sshd", "nginx"}
        text = labctl(tmp_path, "lab", "status", "--name", name)
        assert "target2" in text.stdout
    finally:
        down = labctl(tmp_path, "lab", "down", "--name", name)
    assert down.returncode == 0 and "destroyed" in down.stdout, down.stderr
    assert not any(ns.startswith(f"lc-{name}-") for ns in existing_namespaces())
    assert not Path(f"/run/labctl-lab/{name}").exists()
