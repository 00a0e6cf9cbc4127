"""gather_host_facts / gather_facts over FakeTransports scripted with recorded outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.errors import RemoteError
from labctl.facts import gather_facts, gather_host_facts, gather_operator_facts
from labctl.inventory.load import load_inventory
from labctl.transport import FakeTransport, HostPool, UnscriptedCommand

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests/fixtures/facts"


def _out(fact: str, case: str) -> str:
    return (FIX / fact / f"{case}.out").read_text()


def _err(fact: str, case: str) -> str:
    return (FIX / fact / f"{case}.err").read_text()


def scripted(host: str) -> FakeTransport:
    fake = FakeTransport(host)
    fake.on(["python3", "--version"], stdout=_out("python", "debian12"))
    fake.on(["pypy3", "--version"], exit_code=127, stderr=_err("pypy", "absent-tool"))
    fake.on(["nproc"], stdout=_out("cpus", "two-cores"))
    fake.on(["id", "-u"], stdout="0\n")
    fake.on(["test", "-d", "/run/systemd/system"], exit_code=1)
    fake.on(["printenv", "SSH_CONNECTION"], stdout="192.168.44.1 50000 192.168.44.137 22\n")
    fake.on_prefix(["grep", "-r", "-H", "."], stdout=_out("proc_values", "target-ns"))
    fake.on(["ip", "-4", "-j", "route", "show", "table", "all"], stdout=_out("routes", "target-ns"))
    fake.on(["ip", "-j", "addr", "show"], stdout=_out("addrs", "target-ns"))
    fake.on(["iptables", "-V"], stdout=_out("iptables_version", "debian12-nft"))
    fake.on(["iptables-save"], stdout=_out("iptables", "target-ns"))
    fake.on(["ss", "-Hltn"], stdout=_out("listeners", "target-ns"))
    fake.on_prefix(["ip", "-j", "route", "get"], stdout=_out("route_get", "onlink"))
    fake.on_prefix(["python3", "-c"], exit_code=0)
    # state_dir exists (root, 0755), its lab and host dirs do not yet
    fake.on_prefix(["stat", "-L", "-c"], exit_code=1,
                   stdout="0 root 755 directory|/var/lib/labctl\n",
                   stderr="stat: cannot statx '/var/lib/labctl/x': No such file or directory\n")
    return fake


def test_gather_target_facts_from_recordings() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    fake = scripted("target")
    facts = gather_host_facts(fake, inv.targets[0], "target", inv)
    assert facts.unknown == {}
    assert facts.ip_forward == 0 and facts.privileged
    assert facts.systemd is False
    assert str(facts.ssh.client) == "192.168.44.1"  # type: ignore[union-attr]
    assert "192.168.44.136" in facts.route_gets
    assert facts.iptables is not None and facts.listeners
    assert ("ip", "-j", "route", "get", "192.168.44.136") in fake.commands
    assert ("sudo", "-n", "true") not in fake.commands  # root: no sudo probe


def test_online_with_datalink_gathers_target_routes_and_neighbours() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    fake = scripted("online1")
    fake.on(["ip", "-4", "-j", "neigh", "show"], stdout=_out("neighbours", "online-ns"))
    plain = gather_host_facts(fake, inv.hosts.online[0], "online", inv)
    assert plain.neighbours is None and plain.route_gets == {}
    dl = inv.model_copy(update={"engine": inv.engine.model_copy(update={"datalink": True})})
    facts = gather_host_facts(fake, dl.hosts.online[0], "online", dl)
    assert ("ip", "-j", "route", "get", "192.168.44.137") in fake.commands
    assert list(facts.route_gets) == ["192.168.44.137"]
    assert facts.neighbours is not None and facts.neighbours[0].mac == "22:97:a1:2f:03:b7"


def test_missing_tools_become_unknowns_not_exceptions() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    fake = scripted("online1")
    fake.on(["iptables-save"], exit_code=127, stderr="iptables-save: not found")
    fake.on(["ss", "-Hltn"], raises=RemoteError("channel closed", host="online1"))
    fake.on(["id", "-u"], stdout="1000\n")
    fake.on(["sudo", "-n", "true"], exit_code=1, stderr="sudo: a password is required")
    facts = gather_host_facts(fake, inv.hosts.online[0], "online", inv)
    assert facts.iptables is not None and not facts.iptables.present
    assert "listeners" in facts.unknown and facts.listeners is None
    assert facts.privileged is False
    assert facts.tcp == {"192.168.44.137:80": True}


def test_gather_facts_marks_unreachable_hosts() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")

    def factory(spec):  # type: ignore[no-untyped-def]
        fake = scripted(spec.name)
        if spec.name == "assistant":
            fake.on(["python3", "--version"], raises=OSError("boom"))
        return fake

    facts = gather_facts(HostPool(inv, factory=factory), inv)
    assert set(facts) == {"online1", "target", "assistant"}
    assert facts["target"].unreachable is None
    assert facts["assistant"].unreachable and "boom" in facts["assistant"].unreachable


def test_unscripted_commands_still_raise() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    with pytest.raises(UnscriptedCommand):
        gather_host_facts(FakeTransport("t"), inv.targets[0], "target", inv)


def test_operator_facts() -> None:
    fake = FakeTransport("op").on(["ip", "-j", "addr", "show"], stdout=_out("addrs", "target-ns"))
    assert [str(a) for a in gather_operator_facts(fake).addresses] == ["127.0.0.1", "10.77.249.20"]


def test_daemon_hosts_gather_pypy3_and_the_cpu_count() -> None:
    """Online hosts and the intercept host (assistant, or the target in two-server) say
    whether pypy3 is there and how many CPUs they have; other hosts are not asked."""
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    online = scripted("online1")
    online.on(["pypy3", "--version"], stdout=_out("pypy", "debian12"))
    facts = gather_host_facts(online, inv.hosts.online[0], "online", inv)
    assert facts.pypy is not None and facts.pypy.present and facts.pypy.pypy == "7.3.11"
    assert str(facts.pypy.python) == "3.9.16" and facts.cpus == 2
    assistant = gather_host_facts(scripted("assistant"), inv.hosts.assistant, "assistant", inv)
    assert assistant.pypy is not None and not assistant.pypy.present and assistant.cpus == 2
    target = scripted("target")
    assert gather_host_facts(target, inv.targets[0], "target", inv).pypy is None
    assert ("pypy3", "--version") not in target.commands and ("nproc",) not in target.commands
