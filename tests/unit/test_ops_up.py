"""labctl.up.run.up over FakeTransports: a guarded change that cuts SSH, the dead-man timer,
the daemons as plan changes, and `down` after `up`.

Every host answers the fact commands from recordings and every other command `up` runs from an
explicit rule (tests.unit.up_hosts: no catch-all; an unexpected command fails the test).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import RemoteError
from labctl.facts import OperatorFacts
from labctl.hosts.journal import host_dir, load_local, load_record, new_journal
from labctl.inventory.load import load_inventory
from labctl.inventory.models import Inventory
from labctl.transport import FakeTransport
from labctl.transport.base import TIMEOUT_EXIT, ConnectionLost
from labctl.transport.textfile import unwrite_argv
from labctl.up import down as ops_down
from labctl.up import run as ops
from labctl.up.plan import NONEMPTY
from labctl.verify import fetch as verify
from tests.unit.up_hosts import simulated_host

ROOT = Path(__file__).resolve().parents[2]
ROUTE_ADD = ("ip", "route", "add", "192.168.50.0/24")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


class Hosts:
    def __init__(self) -> None:
        self.fakes: dict[str, FakeTransport] = {}
        self.fresh: dict[str, list[FakeTransport]] = {}

    def factory(self, spec: Any) -> FakeTransport:
        return self.fakes.setdefault(spec.name, simulated_host(spec.name))

    def fresh_factory(self, spec: Any) -> FakeTransport:
        fake = simulated_host(spec.name)
        self.fresh.setdefault(spec.name, []).append(fake)
        return fake


def _inv() -> Inventory:
    return load_inventory(ROOT / "inventories/staging.yaml")


def _opts(hosts: Hosts, **kw: Any) -> ops.UpOptions:
    kw.setdefault("operator_facts", OperatorFacts())
    return ops.UpOptions(factory=hosts.factory, fresh_factory=hosts.fresh_factory, **kw)


def _after(fake: FakeTransport, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every call (commands, puts, gets) made after the first one starting with `prefix`."""
    argvs = [c.argv for c in fake.calls]
    first = next(i for i, a in enumerate(argvs) if a[: len(prefix)] == prefix)
    return argvs[first + 1:]


@pytest.mark.parametrize("how", ["timeout", "lost"])
def test_route_that_cuts_ssh_stops_talking_to_the_host(env: Path, how: str) -> None:
    hosts = Hosts()
    inv = _inv()
    target = hosts.factory(inv.targets[0])
    if how == "timeout":
        target.on_prefix(list(ROUTE_ADD), exit_code=TIMEOUT_EXIT, stderr="timed out after 3s")
    else:
        target.on_prefix(list(ROUTE_ADD), raises=ConnectionLost("SSH connection lost",
                                                                 host="target"))
    started = time.monotonic()
    with pytest.raises(RemoteError) as err:
        ops.up(inv, _opts(hosts, guard_timeout=3.0))
    assert time.monotonic() - started < 10
    msg = err.value.message
    assert "the change route-192.168.50.0/24 on target cut SSH" in msg
    assert "the dead-man rollback on the host restores it at" in msg
    assert err.value.exit_code == 1
    add = next(c for c in target.calls if c.argv[: len(ROUTE_ADD)] == ROUTE_ADD)
    assert add.timeout == 3.0  # the guarded change ran with the short timeout
    assert _after(target, ROUTE_ADD) == []  # no rollback, no lock release over the dead link
    for other in ("online1", "assistant"):  # the other hosts: rolled back and unlocked
        cmds = hosts.fakes[other].commands
        assert cmds[-1][:2] == ("rm", "-rf") and cmds[-1][2].endswith("/lock")
    assert "target" not in hosts.fresh  # no confirmation was attempted


def test_route_that_answers_is_confirmed(env: Path) -> None:
    hosts = Hosts()
    inv = _inv()
    report = ops.up(inv, _opts(hosts, guard_timeout=3.0))
    assert report.ok and report.changed
    target = hosts.fakes["target"]
    assert _after(target, ROUTE_ADD)[0] == ("true",)  # the path survived: it answers
    assert hosts.fresh["target"]  # confirmed over a new connection


def _arm_calls(fake: FakeTransport) -> list[tuple[str, ...]]:
    return [c for c in fake.commands if "rollback" in c and c[0] == "python3"]


def test_deadman_armed_only_where_guarded_right_before_the_change(env: Path) -> None:
    hosts = Hosts()  # deadman_seconds=1: shorter than a guarded change may take
    report = ops.up(_inv(), _opts(hosts, guard_timeout=7.0, deadman_seconds=1.0))
    assert report.ok
    assert _arm_calls(hosts.fakes["online1"]) == []  # no guarded change there: no timer
    assert _arm_calls(hosts.fakes["assistant"]) == []
    assert "online1" not in hosts.fresh and "assistant" not in hosts.fresh
    target = hosts.fakes["target"]
    (arm,) = _arm_calls(target)
    assert float(arm[arm.index("--after") + 1]) >= 7.0 + 10.0  # cannot fire before it applies
    argvs = [c.argv for c in target.calls]
    i_arm, i_add = argvs.index(arm), next(
        i for i, a in enumerate(argvs) if a[: len(ROUTE_ADD)] == ROUTE_ADD)
    assert i_arm < i_add
    # between arming and the change: only the journal write and the change's probe
    between = argvs[i_arm + 1:i_add]
    assert all(unwrite_argv(a) is not None or a[:3] == ("python3", "-c", NONEMPTY)
               for a in between), between
    for name in ("online1", "target", "assistant"):
        journal = load_local("staging", name)
        assert journal is not None and journal.state == "up"
        assert (journal.deadman is not None) == (name == "target")


def test_up_records_log_marks_and_conntrack_for_verify(env: Path) -> None:
    hosts = Hosts()
    inv = _inv()
    verify.save_marks(verify.Marks("staging", 1.0, [verify.LogMark("x", "/old", 9, 9)]))
    for name, size, count in (("online1", 1234, 17), ("target", 99, 5)):
        fake = hosts.factory(inv.host(name))
        path = (inv.logs.online if name == "online1" else inv.logs.target).path
        fake.on(["stat", "-c", "%n %s %i", path, path + ".1"], stdout=f"{path} {size} 77\n")
        fake.on(["cat", *verify.CONNTRACK], stdout=f"{count}\n262144\n")
    report = ops.up(inv, _opts(hosts))
    assert report.ok
    marks = verify.load_marks("staging")
    assert marks is not None
    assert {(m.host, m.offset, m.inode) for m in marks.logs} == {
        ("online1", 1234, 77), ("target", 99, 77)}
    assert marks.conntrack == {"online1": 17, "target": 5}
    scope = verify.resolve_scope(inv, since_up=True, window=None)
    assert scope.marks is not None and scope.marks.find("target", inv.logs.target.path)


def test_each_lock_is_released_once_right_after_its_hosts_marks(env: Path) -> None:
    hosts = Hosts()
    inv = _inv()
    path = inv.logs.target.path
    hosts.factory(inv.targets[0]).on(["stat", "-c", "%n %s %i", path, path + ".1"],
                                     stdout=f"{path} 99 77\n")
    assert ops.up(inv, _opts(hosts)).ok
    for name, fake in hosts.fakes.items():
        argvs = [c.argv for c in fake.calls]
        releases = [i for i, a in enumerate(argvs)
                    if a[:2] == ("rm", "-rf") and a[-1].endswith("/lock")]
        assert len(releases) == 1, (name, argvs)
        assert releases[0] == len(argvs) - 1      # the last command on the host
    # on the target: the log's end and the conntrack count, then at once the release
    target = [c.argv for c in hosts.fakes["target"].calls]
    assert target[-3] == ("stat", "-c", "%n %s %i", path, path + ".1"), target[-3:]
    assert target[-2][:2] == ("cat", "/proc/sys/net/netfilter/nf_conntrack_count")


def test_failed_up_forgets_old_marks(env: Path) -> None:
    hosts = Hosts()
    inv = _inv()
    verify.save_marks(verify.Marks("staging", 1.0, [verify.LogMark("x", "/old", 9, 9)]))
    hosts.factory(inv.targets[0]).on_prefix(list(ROUTE_ADD), exit_code=2, stderr="nope")
    with pytest.raises(RemoteError):
        ops.up(inv, _opts(hosts))
    assert verify.load_marks("staging") is None


def _launches(fake: FakeTransport) -> list[tuple[str, ...]]:
    return [c for c in fake.commands if c[0] == "python3" and "detach" in c]


def test_daemons_are_the_plans_changes_from_start_to_down(env: Path) -> None:
    """The daemons `up` starts are exactly the DAEMON changes of its plan (argv, host, order);
    they are journaled as entries and records; `down` stops them through the same entries."""
    hosts = Hosts()
    inv = _inv()
    report = ops.up(inv, _opts(hosts))
    assert report.ok and report.plan is not None
    planned = [(c.host, c.apply[0]) for c in report.plan.daemons]
    assert [h for h, _ in planned] == ["assistant", "online1"]
    assert [c.step for c in report.plan.changes[-2:]] == ["daemon:intercept", "daemon:tcpcopy"]
    for host, argv in planned:
        assert _launches(hosts.fakes[host]) == [argv]
    applied = [s.step for s in report.steps if s.status == "applied"]
    assert applied.index("daemon:intercept") < applied.index("daemon:tcpcopy")
    for host, name in (("assistant", "intercept"), ("online1", "tcpcopy")):
        journal = load_local("staging", host)
        assert journal is not None
        (entry,) = [e for e in journal.entries if e.kind == "daemon"]
        assert entry.step == f"daemon:{name}" and entry.status == "applied"
        assert [d.name for d in journal.daemons] == [name]
    down = ops_down.down(inv, factory=hosts.factory)
    assert down.ok, [(h.host, h.error, h.leftovers) for h in down.hosts]
    for host in ("assistant", "online1"):
        assert ("kill", "-TERM", "4242") in hosts.fakes[host].commands
        journal = load_local("staging", host)
        assert journal is not None and journal.state == "down"
        assert all(d.stopped_at for d in journal.daemons)
    assert any(c[:3] == ("ip", "route", "del") for c in hosts.fakes["target"].commands)


def test_a_daemon_that_never_gets_ready_rolls_everything_back(env: Path) -> None:
    hosts = Hosts()
    inv = _inv()
    online = hosts.factory(inv.hosts.online[0])
    online.on_prefix(["cat", "/var/lib/labctl/staging/online1/tcpcopy.stats"],
                     stdout='{"intercepts": [{"connections": 0}]}')
    with pytest.raises(RemoteError, match=r"timed out .* tcpcopy to connect"):
        ops.up(inv, _opts(hosts, ready_timeout=0.3))
    journal = load_local("staging", "online1")
    assert journal is not None and journal.state == "rolled_back"
    assert ("kill", "-TERM", "4242") in online.commands  # tcpcopy stopped
    assert ("kill", "-TERM", "4242") in hosts.fakes["assistant"].commands  # intercept too
    assert any(c[:3] == ("ip", "route", "del") for c in hosts.fakes["target"].commands)


def test_every_command_after_the_facts_is_privileged_dead_man_and_down_included(
        env: Path) -> None:
    """Issue 13: with `sudo: true` the dead-man was armed and cancelled without sudo. Every
    command `up` (lock, ship, journal, changes, dead-man arm and confirm, daemons) and `down`
    (undo, sweep) runs after the facts must ask for privilege, so a sudo host runs it through
    `sudo -n`; only the facts choose per command."""
    hosts = Hosts()
    inv = _inv()
    assert ops.up(inv, _opts(hosts, guard_timeout=3.0)).ok
    assert ops_down.down(inv, factory=hosts.factory).ok
    fakes = [*hosts.fakes.values(), *(f for fs in hosts.fresh.values() for f in fs)]
    assert _arm_calls(hosts.fakes["target"]) and hosts.fresh["target"]
    for fake in fakes:
        calls = [c for c in fake.calls if not c.argv[0].startswith("<")]
        first = next((i for i, c in enumerate(calls) if c.argv[:2] == ("mkdir", "-p")), 0)
        unprivileged = [c.argv for c in calls[first:] if not c.sudo]
        assert unprivileged == [], (fake.host, unprivileged)
    confirm = [c for f in hosts.fresh["target"] for c in f.calls if c.argv[0] == "touch"]
    assert confirm and all(c.sudo for c in confirm)  # the dead-man's cancel


def test_a_second_up_is_refused_at_the_first_hosts_lock_holding_nothing(env: Path) -> None:
    """The first host's lock is taken alone, before the others': an `up` that finds it held by
    a live labctl is refused naming the holder, takes no other lock, changes nothing, and
    leaves the local record (the holder's) alone."""
    hosts = Hosts()
    inv = _inv()
    first = inv.all_hosts()[0].name
    lock = f"{host_dir(inv.state_dir, inv.lab, first)}/lock"
    held = hosts.factory(inv.host(first))
    held.on(["mkdir", lock], exit_code=1, stderr="mkdir: File exists")
    held.files[f"{lock}/owner.json"] = json.dumps(
        {"pid": os.getpid(), "operator": socket.gethostname(), "since": 1.0}).encode()
    with pytest.raises(Exception, match=rf"another labctl \(pid {os.getpid()} on "
                                        rf"{socket.gethostname()}\) holds the lock {lock}"):
        ops.up(inv, _opts(hosts))
    for name, fake in hosts.fakes.items():
        argvs = [c.argv for c in fake.calls]
        assert not any(a[:1] == ("mkdir",) and a[-1].endswith("/lock") for a in argvs
                       if name != first), (name, argvs)
        assert not any(a[:2] in (("ip", "route"), ("iptables", "-w")) and a[2] in ("add", "-t")
                       for a in argvs if len(a) > 2), (name, argvs)
        assert not any(a[:2] == ("rm", "-rf") for a in argvs), (name, argvs)  # not its lock
    assert load_record(inv.lab) is None


@pytest.mark.parametrize("state", ["up", "applying", "failed"])
def test_up_on_a_host_whose_journal_is_not_down_is_refused_changing_nothing(
        env: Path, state: str) -> None:
    hosts = Hosts()
    inv = _inv()
    target = hosts.factory(inv.targets[0])
    path = f"{host_dir(inv.state_dir, inv.lab, 'target')}/journal.json"
    old = new_journal(inv.lab, "target", "run-before", now=1.0)
    old.state = state
    target.files[path] = old.to_json().encode()
    with pytest.raises(Exception, match=rf"lab staging is not down on target \(journal {state}, "
                                        r"run run-before\); nothing was changed"):
        ops.up(inv, _opts(hosts))
    assert target.files[path] == old.to_json().encode()  # the journal is untouched
    for fake in hosts.fakes.values():
        argvs = [c.argv for c in fake.calls]
        assert not any(a[:3] == ("ip", "route", "add") or (
            a[:1] == ("iptables",) and a[4:5] in (("-N",), ("-A",), ("-I",))) for a in argvs)
        assert argvs[-1][:2] == ("rm", "-rf") and argvs[-1][2].endswith("/lock")  # released
    for state_ok in ("down", "rolled_back"):
        again = Hosts()
        old.state = state_ok
        again.factory(inv.targets[0]).files[path] = old.to_json().encode()
        assert ops.up(inv, _opts(again)).ok
