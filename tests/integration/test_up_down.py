"""`labctl up` / `down` in the local lab with real sshd, nginx, iptables and the real engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_up_down_helpers import (
    connect_from,
    labctl,
    ns_run,
    snapshot,
    tagged,
    wait_copies,
    write_inventory,
)

pytestmark = pytest.mark.integration
CHANNEL_PORT = 36524  # the lab inventory's intercept.port (the default)


def _traffic(info: Any, n: int) -> dict[str, Any]:
    import subprocess
    import sys

    out = subprocess.run(
        [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
         f"http://{info.hosts['online'].address}", "--requests", str(n), "--mode", "mixed",
         "--json"], capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout))


@pytest.mark.parametrize("topology", ["three-server", "two-server"])
def test_up_traffic_down_restores_everything(lab: Any, tmp_path: Path, topology: str) -> None:
    inv = write_inventory(lab, tmp_path, topology)
    before = snapshot(lab)
    up = labctl(tmp_path, "up", str(inv))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "dead-man confirmed" in up.stdout
    st = labctl(tmp_path, "status", "--json")
    assert st.returncode == 0, st.stderr
    hosts = {h["host"]: h for h in json.loads(st.stdout)["hosts"]}
    daemons = {d["name"]: d for h in hosts.values() for d in h["daemons"]}
    assert daemons["tcpcopy"]["alive"] and daemons["intercept"]["alive"]
    assert all(h["journal_state"] == "up" for h in hosts.values())
    # the channel port answers only the online host (its tcpcopy is connected: the copies
    # below); any other namespace's SYN is dropped, not refused
    ihost = lab.hosts["assistant" if topology == "three-server" else "target"].address
    stranger = "target" if topology == "three-server" else "assistant"
    assert connect_from(lab, "online", ihost, CHANNEL_PORT) == "connected"
    assert connect_from(lab, stranger, ihost, CHANNEL_PORT) == "timeout"
    assert connect_from(lab, "client", ihost, CHANNEL_PORT) == "timeout"

    sent = _traffic(lab, 40)["sent"]
    assert sent == 40
    prefix = (str(lab.fake_pool).rsplit(".", 1)[0] + "." if topology == "three-server"
              else f"{lab.hosts['online'].address} ")
    assert wait_copies(lab, prefix, sent, timeout=20) >= sent  # every request reached the target

    down = labctl(tmp_path, "down", "--json")
    assert down.returncode == 0, down.stdout + down.stderr
    report = json.loads(down.stdout)
    finals = {k for h in report["hosts"] for k in h["final_stats"]}
    assert finals == {"tcpcopy", "intercept"}  # final counters kept
    assert snapshot(lab) == before
    assert tagged(lab) == []
    # the rule went with `down`: nothing listens now, so the stranger is refused at once
    assert connect_from(lab, stranger, ihost, CHANNEL_PORT) == "refused"

    again = labctl(tmp_path, "down")
    assert again.returncode == 0
    assert "nothing to do" in again.stdout and "already down" in again.stdout
    assert snapshot(lab) == before


def test_plan_and_dry_run_change_nothing(lab: Any, tmp_path: Path) -> None:
    inv = write_inventory(lab, tmp_path)
    before = snapshot(lab)
    plan = labctl(tmp_path, "plan", str(inv), "--json")
    assert plan.returncode == 0, plan.stderr
    steps = [c["step"] for c in json.loads(plan.stdout)["plan"]["changes"]]
    assert f"route-{lab.fake_pool}" in steps
    dry = labctl(tmp_path, "up", str(inv), "--dry-run")
    assert dry.returncode == 0 and "dry run: nothing was changed" in dry.stdout
    assert snapshot(lab) == before and tagged(lab) == []
    assert not Path(lab.dir, "state").exists() or not any(Path(lab.dir, "state").rglob("*.json"))


def test_refused_before_any_change_when_client_net_holds_operator(
    lab: Any, tmp_path: Path
) -> None:
    cut = str(lab.lab_net).replace(".0/24", ".0/28")  # contains the operator's 10.77.N.1
    inv = write_inventory(lab, tmp_path, edit=lambda t: t.replace(
        f"networks: [{lab.fake_pool}]", f"networks: [{lab.fake_pool}, {cut}]"))
    before = snapshot(lab)
    up = labctl(tmp_path, "up", str(inv), "--force")
    assert up.returncode == 1, up.stdout + up.stderr
    assert "route.operator" in up.stdout + up.stderr
    assert "nothing was changed" in up.stderr
    assert snapshot(lab) == before and tagged(lab) == []
    assert ns_run(lab, "target", "ip", "route", "show", "proto", "252") == ""


def test_stale_saved_plan_is_refused_and_a_fresh_one_applies(lab: Any, tmp_path: Path) -> None:
    """`plan --out` while the assistant forwards (so the plan fixes ip_forward); someone turns
    forwarding off by hand; `up --plan` refuses the stale plan, touching nothing. A new plan
    applies, and `down` restores everything."""
    inv = write_inventory(lab, tmp_path)
    before = snapshot(lab)
    ns_run(lab, "assistant", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    saved = tmp_path / "plan.json"
    plan = labctl(tmp_path, "plan", str(inv), "--fix", "--out", str(saved))
    assert plan.returncode == 0 and saved.exists(), plan.stdout + plan.stderr
    assert "ip_forward" in json.dumps(json.loads(saved.read_text())["changes"])
    ns_run(lab, "assistant", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    up = labctl(tmp_path, "up", str(inv), "--plan", str(saved))
    assert up.returncode == 1, up.stdout + up.stderr
    assert "is stale" in up.stderr and "no longer planned: [assistant]" in up.stderr, up.stderr
    assert snapshot(lab) == before and tagged(lab) == []
    fresh = tmp_path / "fresh.json"
    assert labctl(tmp_path, "plan", str(inv), "--out", str(fresh)).returncode == 0
    up = labctl(tmp_path, "up", str(inv), "--plan", str(fresh))
    assert up.returncode == 0, up.stdout + up.stderr
    down = labctl(tmp_path, "down", str(inv))
    assert down.returncode == 0, down.stdout + down.stderr
    assert tagged(lab) == [] and snapshot(lab) == before
