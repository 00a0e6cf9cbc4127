"""The local namespace lab: real sshd, real nginx, routes, and a clean teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from labctl.errors import LabError
from labctl.lab import (
    LabInfo,
    LabSpec,
    assert_routes_via_lab,
    build_lab,
    destroy_lab,
    lab_status,
    load_lab,
)
from labctl.lab.net import existing_namespaces, ns_pids, route_dev
from labctl.lab.services import pid_alive

pytestmark = pytest.mark.integration


def _ns_run(info: LabInfo, role: str, *argv: str) -> str:
    out = subprocess.run([*info.ns_argv(role), *argv], capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_ssh_reaches_servers_with_strict_host_keys(lab: LabInfo, lab_ssh: Callable) -> None:
    for role in ("online", "target", "assistant"):
        conn = lab_ssh(lab, role)
        res = conn.run("hostname; ip -4 -o addr show dev eth0", hide=True)
        first, rest = res.stdout.split("\n", 1)
        assert first == role
        assert f"{lab.hosts[role].address}/24" in rest


def test_a_login_on_a_lab_host_runs_the_hosts_shell_start_up_not_the_operators(
        lab: LabInfo, lab_ssh: Callable) -> None:
    """root's `.bashrc` / `.profile` on a lab host are the host's own (bound over the
    operator's in sshd's mount namespace); the operator's stay as they are."""
    show = 'for f in .bashrc .profile; do if [ -f ~/$f ]; then cat ~/$f; else echo none; fi; done'
    own = (lab.hosts["target"].dir / "host.bashrc").read_text()
    assert "lab host target" in own
    res = lab_ssh(lab, "target").run(show, hide=True)
    assert res.stdout in (own * 2, own + "none\n", "none\n" + own, "none\nnone\n")
    here = subprocess.run(["sh", "-c", show], capture_output=True, text=True, check=True)
    assert "lab host" not in here.stdout


def test_ssh_rejects_unknown_host_key(lab: LabInfo, tmp_path: Path) -> None:
    import paramiko
    from fabric import Connection

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = Connection(lab.hosts["online"].address, user="root",
                      connect_kwargs={"key_filename": str(lab.ssh_key), "look_for_keys": False,
                                      "allow_agent": False})
    conn.client.load_host_keys(str(empty))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        conn.open()
    conn.close()


def test_client_request_lands_in_online_log_only(lab: LabInfo) -> None:
    online, target = lab.hosts["online"], lab.hosts["target"]
    body = _ns_run(lab, "client", "curl", "-sS", "-m", "5", "-A", "labctl-test",
                   "--data-binary", "x" * 1234, f"http://{online.address}/echo")
    assert body.strip() == "1234"
    assert online.access_log is not None and target.access_log is not None
    assert _wait_for(lambda: "labctl-test" in online.access_log.read_text())  # type: ignore
    line = next(ln for ln in online.access_log.read_text().splitlines() if "labctl-test" in ln)
    assert line.startswith(f"{lab.hosts['client'].address} [")
    assert '"POST /echo HTTP/1.1" 200' in line
    assert '"1234"' in line
    assert "labctl-test" not in target.access_log.read_text()


def test_endpoints(lab: LabInfo) -> None:
    url = f"http://{lab.hosts['online'].address}"
    null = ["-o", "/dev/null"] * 3
    out = _ns_run(lab, "client", "curl", "-sS", "-m", "10", *null,
                  "-w", "%{http_code} %{size_download} %{time_total}\n",
                  f"{url}/", f"{url}/big", f"{url}/slow")
    rows = [ln.split() for ln in out.strip().splitlines()]
    assert [r[0] for r in rows] == ["200", "200", "200"]
    assert int(rows[1][1]) == 1048576
    assert float(rows[2][2]) >= 0.5


def test_target_routes_client_net_via_assistant(lab: LabInfo) -> None:
    client = lab.hosts["client"].address
    out = _ns_run(lab, "target", "ip", "route", "get", client)
    assert f"via {lab.hosts['assistant'].address} dev eth0" in out
    assert _ns_run(lab, "assistant", "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    router = subprocess.run(["ip", "netns", "exec", lab.router_ns, "sysctl", "-n",
                             "net.ipv4.ip_forward"], capture_output=True, text=True, check=True)
    assert router.stdout.strip() == "1"


def test_offloads_off_on_lab_links(lab: LabInfo) -> None:
    out = _ns_run(lab, "online", "ethtool", "-k", "eth0")
    assert "tx-checksumming: off" in out
    assert "tcp-segmentation-offload: off" in out
    root = subprocess.run(["ethtool", "-k", lab.operator_ifname], capture_output=True,
                          text=True, check=True).stdout
    assert "generic-segmentation-offload: off" in root


def test_routes_via_lab_link_and_removed_by_down(lab_factory: Callable[..., LabInfo]) -> None:
    info = lab_factory()
    for addr in info.addresses():
        assert route_dev(addr) == info.operator_ifname
    assert_routes_via_lab(info)
    destroy_lab(info.name)
    for addr in (info.hosts["client"].address, info.hosts["online"].address):
        assert route_dev(addr) != info.operator_ifname
    with pytest.raises(LabError):
        assert_routes_via_lab(info)


def test_destroy_leaves_no_trace(lab_factory: Callable[..., LabInfo]) -> None:
    info = lab_factory()
    pids = list(info.pids.values())
    assert len(pids) == 5 and all(pid_alive(p) for p in pids)
    status = lab_status(info.name)
    assert status.up
    # A stray process inside a lab namespace (like a daemon a test forgot) must go too.
    stray = subprocess.Popen([*info.ns_argv("target"), "sleep", "300"])
    assert _wait_for(lambda: stray.pid in ns_pids(info.hosts["target"].netns))
    assert destroy_lab(info.name) is True
    assert stray.wait(timeout=5) != 0
    assert not set(info.namespaces) & existing_namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert info.operator_ifname not in links
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    assert f"10.77.{info.index}." not in routes and f"10.78.{info.index}." not in routes
    assert not any(pid_alive(p) for p in pids)
    assert not info.dir.exists()
    with pytest.raises(LabError, match="no lab named"):
        load_lab(info.name)


def test_destroy_twice_is_noop(lab_factory: Callable[..., LabInfo]) -> None:
    info = lab_factory()
    assert destroy_lab(info.name) is True
    assert destroy_lab(info.name) is False
    assert not info.dir.exists()


def test_two_labs_side_by_side(lab_factory: Callable[..., LabInfo]) -> None:
    a, b = lab_factory(), lab_factory()
    assert a.index != b.index
    assert a.hosts["online"].address != b.hosts["online"].address
    for info in (a, b):
        url = f"http://{info.hosts['online'].address}/"
        out = _ns_run(info, "client", "curl", "-sS", "-m", "5", url)
        assert "hello from online" in out
    assert lab_status(a.name).up and lab_status(b.name).up


def test_failed_build_cleans_up_and_explains(lab: LabInfo) -> None:
    with pytest.raises(LabError, match="already in use") as exc:
        build_lab(LabSpec(name=lab.name))
    assert "Traceback" not in exc.value.render()
    assert lab_status(lab.name).up  # the existing lab was not touched


def test_failure_mid_build_removes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.lab import services
    from tests.integration.conftest import unique_lab_name

    name = unique_lab_name()

    def broken(info: LabInfo) -> dict[str, int]:
        raise LabError("simulated: sshd on online did not start")

    monkeypatch.setattr(services, "start_services", broken)
    with pytest.raises(LabError, match="simulated") as exc:
        build_lab(LabSpec(name=name))
    assert "everything it built was removed" in exc.value.message
    ns = {f"lc-{name}-{r}" for r in ("client", "online", "target", "assistant", "router")}
    assert not ns & existing_namespaces()
    assert not Path(f"/run/labctl-lab/{name}").exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"lc-{name}-op" not in links


def test_index_overlapping_a_root_route_is_refused(lab: LabInfo) -> None:
    from tests.integration.conftest import unique_lab_name

    name = unique_lab_name()
    with pytest.raises(LabError, match="overlaps root-namespace route"):
        build_lab(LabSpec(name=name, index=lab.index))
    assert not Path(f"/run/labctl-lab/{name}").exists()
    assert not {f"lc-{name}-online", f"lc-{name}-router"} & existing_namespaces()


def test_cli_up_status_down() -> None:
    from tests.integration.conftest import unique_lab_name

    name = unique_lab_name()
    cli = [sys.executable, "-c", "import sys; from labctl.cli import main; sys.exit(main())"]
    try:
        up = subprocess.run([*cli, "lab", "up", "--name", name], capture_output=True, text=True,
                            timeout=60)
        assert up.returncode == 0, up.stderr
        assert f"/run/labctl-lab/{name}/lab.json" in up.stdout
        inventory = Path(up.stdout.split("next:       labctl up ", 1)[1].split()[0])
        assert inventory.exists() and f"lab: {name}" in inventory.read_text()
        st = subprocess.run([*cli, "lab", "status", "--name", name, "--json"],
                            capture_output=True, text=True, timeout=30)
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        assert data["up"] is True
        assert {h["role"] for h in data["hosts"]} == {"client", "online", "target", "assistant"}
        again = subprocess.run([*cli, "lab", "up", "--name", name], capture_output=True,
                               text=True, timeout=60)
        assert again.returncode == 1
        assert "already in use" in again.stderr and "Traceback" not in again.stderr
    finally:
        down = subprocess.run([*cli, "lab", "down", "--name", name], capture_output=True,
                              text=True, timeout=60)
    assert down.returncode == 0 and "destroyed" in down.stdout
    assert not Path(f"/run/labctl-lab/{name}").exists()
    assert not inventory.exists()


def test_traffic_generator_truth_matches_online_access_log(lab: LabInfo) -> None:
    import re
    from collections import Counter

    online = lab.hosts["online"]
    source = lab.hosts["client"].extra_addresses[0]
    argv = [*lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic",
            "--url", f"http://{online.address}", "--requests", "120", "--mode", "mixed",
            "--connections", "3", "--post-sizes", "0,1024,1m", "--source", source, "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["attempted"], summary["ok"], summary["errors"]) == (120, 120, 0)
    assert 3 <= summary["connections_opened"] < 120
    truth = Counter({(r["method"], r["uri"], str(r["body_len"]) if r["method"] == "POST"
                      else "-"): r["ok"] for r in summary["by_request"]})
    pattern = re.compile(r'^(\S+) \[[^]]+\] "(\S+) (\S+) HTTP/1.1" 200 \d+ \d+ "([^"]*)"')
    assert online.access_log is not None

    def logged() -> Counter[tuple[str, str, str]]:
        seen: Counter[tuple[str, str, str]] = Counter()
        for line in online.access_log.read_text().splitlines():  # type: ignore[union-attr]
            m = pattern.match(line)
            if m and m.group(1) == source:
                seen[(m.group(2), m.group(3), m.group(4))] += 1
        return seen

    assert _wait_for(lambda: logged() == truth), (logged(), truth)


def test_cli_up_down_json(tmp_path: Path) -> None:
    from tests.integration.conftest import unique_lab_name

    name = unique_lab_name()
    cli = [sys.executable, "-c", "import sys; from labctl.cli import main; sys.exit(main())"]
    env = {**os.environ, "LABCTL_STATE_DIR": str(tmp_path / "state")}
    try:
        up = subprocess.run([*cli, "lab", "up", "--name", name, "--json"], capture_output=True,
                            text=True, timeout=60, env=env)
        assert up.returncode == 0, up.stderr
        doc = json.loads(up.stdout)
        assert doc["name"] == name and set(doc["hosts"]) == {"client", "online", "target",
                                                             "assistant"}
        assert Path(doc["inventories"]["three-server"]).exists()
        assert Path(doc["inventories"]["two-server"]).exists() and doc["seconds"] > 0
    finally:
        down = subprocess.run([*cli, "lab", "down", "--name", name, "--json"],
                              capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(down.stdout) == {"name": name, "destroyed": True}
    again = subprocess.run([*cli, "lab", "down", "--name", name, "--json"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(again.stdout) == {"name": name, "destroyed": False}
