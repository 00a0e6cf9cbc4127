"""Facts over real SSH in the namespace lab; the ip_forward and conntrack checks fire there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.facts import OperatorFacts, gather_facts
from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo
from labctl.lab.inventory import render_lab_inventory
from labctl.transport import HostPool
from labctl.transport.ssh import SSHTransport
from labctl.up.checks import run_checks
from labctl.up.plan import make_plan

pytestmark = pytest.mark.integration


def _inventory(lab: LabInfo, tmp_path: Path, **replace: str):  # type: ignore[no-untyped-def]
    text = render_lab_inventory(lab)
    for old, new in replace.items():
        text = text.replace(old, new)
    (tmp_path / "inventory.yaml").write_text(text)
    return parse_inventory(text, str(tmp_path / "inventory.yaml"))


def _ns(lab: LabInfo, role: str, *argv: str) -> str:
    return subprocess.run([*lab.ns_argv(role), *argv], check=True, capture_output=True,
                          text=True).stdout


def test_facts_over_ssh_and_checks_fire(lab: LabInfo, tmp_path: Path) -> None:
    inv = _inventory(lab, tmp_path, **{"expected_sessions: 10000": "expected_sessions: 1000000"})
    _ns(lab, "assistant", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    with HostPool.open(inv) as pool:
        facts = gather_facts(pool, inv)
        target = facts["target"]
        assert target.unreachable is None, target.unreachable
        assert target.python is not None and target.python.at_least(3, 9)
        assert target.uid == 0 and target.ifname == "eth0"
        assert target.ssh is not None and str(target.ssh.client) == lab.operator_address
        assert target.route_gets[lab.hosts["assistant"].address].on_link
        assert any(r.dst.compressed == lab.client_net for r in target.routes or ())
        assert facts["online"].tcp == {f"{lab.hosts['target'].address}:80": True}
        assert any(li.port == 80 for li in facts["online"].listeners or ())
        assert facts["assistant"].ip_forward == 1
        # the daemon hosts (online, assistant) say whether pypy3 is there, and their CPUs: the
        # lab's hosts share this machine's files, so its pypy3 (if any) is theirs
        here = shutil.which("pypy3") is not None
        for role in ("online", "assistant"):
            pypy = facts[role].pypy
            assert pypy is not None and pypy.present == here, (role, pypy)
            assert facts[role].cpus == len(os.sched_getaffinity(0)), (role, facts[role].cpus)
        assert target.pypy is None and target.cpus is None  # not asked: runs no daemon
        assert all(not f.unknown for f in facts.values()), {h: f.unknown for h, f in facts.items()}
        # the same transport is reused: one connection per host for the whole gathering
        assert all(isinstance(t, SSHTransport) for t in pool.transports.values())

    findings = {(f.id, f.host) for f in run_checks(inv, facts, OperatorFacts())}
    assert ("assistant.ip_forward", "assistant") in findings
    # max is 262144 (read-only in a namespace); 1,000,000 expected sessions cannot fit
    assert ("conntrack.headroom", "online") in findings
    assert ("conntrack.headroom", "target") in findings
    assert not any(fid.startswith("route.") for fid, _ in findings)

    plan = make_plan(inv, facts, fix=True)
    assert [(c.host, c.step) for c in plan.changes] == [
        ("assistant", "ip_forward"), ("target", f"route-{lab.fake_pool}")]


def test_probes_and_read_only_facts_change_nothing(lab: LabInfo, tmp_path: Path) -> None:
    inv = _inventory(lab, tmp_path)
    before = {r: (_ns(lab, r, "ip", "route", "show", "table", "all"), _ns(lab, r, "iptables-save"))
              for r in ("online", "target", "assistant")}
    with HostPool.open(inv) as pool:
        facts = gather_facts(pool, inv)
        plan = make_plan(inv, facts, notrack=True)
        for change in plan.changes:
            assert change.probe is not None
            assert not pool.transport(change.host).run(list(change.probe)).ok  # not in place
    after = {r: (_ns(lab, r, "ip", "route", "show", "table", "all"), _ns(lab, r, "iptables-save"))
             for r in ("online", "target", "assistant")}
    norm = {r: (v[0], "\n".join(x for x in v[1].splitlines() if not x.startswith("#")))
            for r, v in {**before}.items()}
    assert norm == {r: (v[0], "\n".join(x for x in v[1].splitlines() if not x.startswith("#")))
                    for r, v in after.items()}


def test_strict_host_keys_reject_an_unknown_host(lab: LabInfo, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    inv = _inventory(lab, tmp_path, **{str(lab.known_hosts): str(empty)})
    from labctl.errors import RemoteError

    with pytest.raises(RemoteError) as info:
        HostPool.open(inv)
    assert "known_hosts" in (info.value.hint or "") + info.value.message
