"""`down`/`status` act only on a journal labctl could have written for this lab and host: every
change `up` plans passes, and a planted one is refused before anything of it runs."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from labctl.hosts import daemons as dm
from labctl.hosts.journal import (
    DeadmanRecord,
    Journal,
    Snapshot,
    host_dir,
    new_journal,
    save_local,
)
from labctl.inventory.load import load_inventory
from labctl.inventory.models import Inventory
from labctl.model import Change, ChangeKind
from labctl.transport.fake import FakeTransport
from labctl.up import deadman
from labctl.up import down as ops_down
from labctl.up.plan import chain_change, chain_name, route_change, rule_change, sysctl_change
from labctl.up.trust import JournalRefused, journal_problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    return load_inventory(ROOT / "inventories/staging.yaml")


def planned(inv: Inventory, host: str = "online1") -> tuple[Journal, str]:
    """A journal holding one change of every kind `up` (and a drill) plans."""
    hdir = host_dir(inv.state_dir, inv.lab, host)
    j = new_journal(inv.lab, host, "run1", now=1.0)
    spec = dm.DaemonSpec("tcpcopy", ("-x", "80-1.2.3.4:80"))
    rec = dm.record_for(f"{hdir}/runs/x/labctl-engine.pyz", hdir, inv.lab, spec, False)
    j.daemons.append(rec)
    p = deadman.paths(hdir)
    j.deadman = DeadmanRecord("detached", 60.0, 1.0, p["confirm_file"], p["pid_file"])
    changes = [
        route_change(host, ipaddress.ip_network("192.168.50.0/24"),
                     ipaddress.ip_address("192.168.44.136")),
        chain_change(inv, host, "raw", ["PREROUTING", "OUTPUT"], "notrack-chain"),
        rule_change(inv, host, "raw", "notrack", ("-p", "tcp", "--dport", "80"), "NOTRACK",
                    "notrack port 80"),
        sysctl_change(host, "ip_forward", "net.ipv4.ip_forward", 0, 1, "black hole"),
        Change(host, "netem:eth0", ChangeKind.QDISC, "netem", (("tc", "qdisc", "add"),),
               (("tc", "qdisc", "del", "dev", "eth0", "root"),)),
        Change(host, "daemon:tcpcopy", ChangeKind.DAEMON, "start", (tuple(rec.argv),),
               tuple(tuple(a) for a in dm.undo_argvs(rec))),
    ]
    for c in changes:
        j.plan_entry(c, Snapshot(), 1.0)
    return j, hdir


def test_every_planned_kind_is_trusted(inv: Inventory) -> None:
    j, hdir = planned(inv)
    assert journal_problems(j, inv.lab, "online1", hdir, chain_name(inv)) == []


@pytest.mark.parametrize("tamper, says", [
    (lambda j: setattr(j, "lab", "../../etc"), "belongs to lab '../../etc'"),
    (lambda j: setattr(j, "host", "target"), "host 'target'"),
    (lambda j: j.entries[0].undo.append(["rm", "-rf", "/"]), "would undo with `rm -rf /`"),
    (lambda j: setattr(j.entries[1], "undo", [["iptables", "-w", "-t", "filter", "-F",
                                                 "INPUT"]]), "iptables -w -t filter -F INPUT"),
    (lambda j: setattr(j.entries[3], "undo", [["sysctl", "-w", "kernel.modprobe=/tmp/x"]]),
     "kernel.modprobe"),
    (lambda j: setattr(j.entries[3], "probe", ["sh", "-c", "id"]), "would probe with `sh -c id`"),
    (lambda j: setattr(j.daemons[0], "pid_file", "/etc/shadow"), "files outside"),
    (lambda j: setattr(j.daemons[0], "unit", "sshd"), "names unit 'sshd'"),
    (lambda j: setattr(j.entries[5], "undo", [["pkill", "-TERM", "-F", "/run/other.pid"]]),
     "pkill -TERM -F /run/other.pid"),
    (lambda j: setattr(j.deadman, "confirm_file", "/etc/nologin"), "dead-man timer has files"),
])
def test_a_planted_journal_is_refused(inv: Inventory, tamper, says: str) -> None:  # type: ignore[no-untyped-def]
    j, hdir = planned(inv)
    tamper(j)
    problems = journal_problems(j, inv.lab, "online1", hdir, chain_name(inv))
    assert any(says in p for p in problems), problems


def test_down_runs_nothing_of_a_refused_journal(inv: Inventory) -> None:
    """FakeTransport raises on anything unscripted: only the lock and the journal read are
    scripted, so running any of the planted commands would fail the test differently."""
    j, hdir = planned(inv)
    j.entries[0].undo = [["rm", "-rf", "/"]]
    fake = FakeTransport("online1").on_prefix(["mkdir"]).on_prefix(["rm", "-rf", f"{hdir}/lock"])
    fake.on_prefix(["cat"], stdout=j.to_json())
    with pytest.raises(JournalRefused, match="rm -rf /"):
        ops_down.down_host(fake, inv, inv.hosts.online[0])


def test_the_local_copy_is_never_named_by_a_hostile_journal(tmp_path: Path) -> None:
    j = new_journal("../../x", "online1", "r")
    with pytest.raises(ValueError, match="not a plain name"):
        save_local(j, root=tmp_path)
    ok = dataclasses.replace(j, lab="lab1")
    assert save_local(ok, root=tmp_path) == tmp_path / "lab1" / "online1.journal.json"


def test_the_deadmans_daemon_stop_checks_the_pid_is_still_the_daemon() -> None:
    rec = dm.DaemonRecord("tcpcopy", [], "/s/l/h/tcpcopy.pid", "/s/l/h/tcpcopy.stats",
                          "/s/l/h/tcpcopy.log")
    assert dm.undo_argvs(rec) == [["pkill", "-TERM", "-F", "/s/l/h/tcpcopy.pid", "-f",
                                   "/s/l/h/tcpcopy\\.stats"]]
