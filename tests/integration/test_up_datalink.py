"""`labctl up` with `engine.datalink: true`: copies leave online at the data link (`-o DEV`,
next-hop MACs from facts), so an iptables DROP in online's OUTPUT for the copied flow never
sees them; `labctl down` still restores routes and iptables exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from labctl.lab import assert_routes_via_lab
from tests.integration.test_up_down_helpers import labctl, ns_run, snapshot, tagged, write_inventory

pytestmark = pytest.mark.integration

REQUESTS = 100


def _drop_rule(info: Any) -> list[str]:
    return ["-d", str(info.hosts["target"].address), "-p", "tcp", "--dport", "80", "-j", "DROP"]


def _drop_packets(info: Any) -> int:
    """Packet counter of our DROP rule in online's OUTPUT chain."""
    target = str(info.hosts["target"].address)
    out = ns_run(info, "online", "iptables", "-L", "OUTPUT", "-v", "-x", "-n")
    for line in out.splitlines():
        fields = line.split()
        if "DROP" in fields and target in fields and "dpt:80" in fields:
            return int(fields[0])
    raise AssertionError(f"DROP rule not found in online's OUTPUT:\n{out}")


def _copies(info: Any, prefix: str) -> int:
    log = Path(info.hosts["target"].access_log)
    return sum(1 for ln in log.read_text().splitlines() if ln.startswith(prefix))


def _wait_copies(info: Any, prefix: str, want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while _copies(info, prefix) < want and time.monotonic() < deadline:
        time.sleep(0.25)
    return _copies(info, prefix)


def _tcpcopy_cmdline(info: Any) -> str:
    for pid in ns_run(info, "online", "ip", "netns", "pids", info.hosts["online"].netns).split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "labctl-engine.pyz" in cmd and " tcpcopy " in cmd:
            return cmd
    raise AssertionError("no tcpcopy process in online's namespace")


def _traffic(info: Any, n: int) -> dict[str, Any]:
    assert_routes_via_lab(info, [info.hosts["online"].address])
    out = subprocess.run(
        [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
         f"http://{info.hosts['online'].address}", "--requests", str(n), "--mode", "mixed",
         "--json"], capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout))


def test_up_datalink_copies_bypass_onlines_output_chain(lab: Any, tmp_path: Path) -> None:
    def datalink(text: str) -> str:
        assert "datalink: false" in text
        return text.replace("datalink: false", "datalink: true")

    inv = write_inventory(lab, tmp_path, edit=datalink)
    before = snapshot(lab)
    up = labctl(tmp_path, "up", str(inv))
    assert up.returncode == 0, up.stdout + up.stderr
    target_mac = ns_run(lab, "target", "cat", "/sys/class/net/eth0/address").strip()
    # the running tcpcopy got -o and the next-hop MAC (on-link: the target's own eth0)
    cmd = _tcpcopy_cmdline(lab)
    assert f"@{target_mac}" in cmd and "-o eth0" in cmd, cmd
    rule = _drop_rule(lab)
    ns_run(lab, "online", "iptables", "-I", "OUTPUT", *rule)
    try:
        sent = _traffic(lab, REQUESTS)["sent"]
        assert sent == REQUESTS
        prefix = str(lab.fake_pool).rsplit(".", 1)[0] + "."
        assert _wait_copies(lab, prefix, sent) >= sent  # every copy reached the target
        assert _drop_packets(lab) == 0  # ... without passing online's OUTPUT chain
        down = labctl(tmp_path, "down")
        assert down.returncode == 0, down.stdout + down.stderr
    finally:
        subprocess.run([*lab.ns_argv("online"), "iptables", "-D", "OUTPUT", *rule],
                       capture_output=True, timeout=30, check=False)
    assert snapshot(lab) == before
    assert tagged(lab) == []


def test_plan_lists_the_daemons_and_a_changed_daemon_flag_makes_a_saved_plan_stale(
    lab: Any, tmp_path: Path
) -> None:
    """`labctl plan` shows each daemon change with its engine flags and readiness probe. The
    target's MAC is a fact that ends up in tcpcopy's flags (`-x …@MAC`): change it by hand
    after `plan --out`, and `up --plan` refuses, naming the daemon, the field and the flag."""
    inv = write_inventory(lab, tmp_path,
                          edit=lambda t: t.replace("datalink: false", "datalink: true"))
    before = snapshot(lab)
    saved = tmp_path / "plan.json"
    plan = labctl(tmp_path, "plan", str(inv), "--out", str(saved))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = " ".join(plan.stdout.split())
    assert "daemon:intercept" in shown and "daemon:tcpcopy" in shown, plan.stdout
    assert "alive and listening on :36524" in shown, plan.stdout
    assert "alive and connected to every intercept" in shown, plan.stdout
    old_mac = ns_run(lab, "target", "cat", "/sys/class/net/eth0/address").strip()
    assert f"@{old_mac}" in shown  # the flag itself is listed
    records = json.loads(saved.read_text())["changes"]
    tcpcopy = next(r for r in records if r["step"] == "daemon:tcpcopy")
    assert any(a.endswith(f"@{old_mac}") for a in tcpcopy["daemon"]["args"])
    new_mac = "02:00:5e:10:20:30" if old_mac != "02:00:5e:10:20:30" else "02:00:5e:10:20:31"
    _set_mac(lab, new_mac)
    try:
        up = labctl(tmp_path, "up", str(inv), "--plan", str(saved))
    finally:
        _set_mac(lab, old_mac)
    assert up.returncode == 1, up.stdout + up.stderr
    err = " ".join(up.stderr.split())
    assert "is stale" in err and "changed [online] daemon:tcpcopy: daemon.args:" in err, err
    assert f"@{old_mac}" in err and f"@{new_mac}" in err, err
    assert snapshot(lab) == before and tagged(lab) == []


def _set_mac(info: Any, mac: str) -> None:
    """Give the target's eth0 another MAC, and make the lab's other ends (the operator's link in
    the root namespace, online, assistant) forget the old one."""
    target = str(info.hosts["target"].address)
    ns_run(info, "target", "ip", "link", "set", "dev", "eth0", "address", mac)
    subprocess.run(["ip", "neigh", "flush", "to", target, "dev", info.operator_ifname],
                   capture_output=True, timeout=30, check=True)
    for role in ("online", "assistant"):
        ns_run(info, role, "ip", "neigh", "flush", "to", target)
