"""labctl.up.run.up over FakeTransports: a guarded change that cuts SSH, and the dead-man timer.

Every host answers the fact commands from recordings (tests.unit.test_facts_gather.scripted)
and anything else with exit 0 (a catch-all rule), except where a test scripts otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import RemoteError
from labctl.facts import OperatorFacts
from labctl.inventory.load import load_inventory
from labctl.inventory.models import Inventory
from labctl.transport import FakeTransport
from labctl.transport.base import TIMEOUT_EXIT, ConnectionLost
from labctl.up import run as ops
from labctl.up.plan import NONEMPTY
from tests.unit.test_facts_gather import scripted

ROOT = Path(__file__).resolve().parents[2]
ROUTE_ADD = ("ip", "route", "add", "192.168.50.0/24")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in (ops.ALLOW_SSH_CUT_ENV, ops.DEADMAN_ENV, ops.GUARD_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("labctl.facts.gather_operator_facts", lambda *a: OperatorFacts())
    monkeypatch.setattr("labctl.up.execute._Up.ship", lambda self: None)  # see test_ship_build
    monkeypatch.setattr("labctl.up.execute._Up.start_daemons", lambda self: None)
    return tmp_path


def host_fake(name: str) -> FakeTransport:
    fake = FakeTransport(name).on_regex(".")  # anything not scripted below: exit 0, no output
    for rule in scripted(name)._rules:
        fake._rules.append(rule)
    fake.on_prefix(["python3", "-c", NONEMPTY], exit_code=1)  # probes: nothing in place yet
    fake.on_prefix(["iptables", "-w", "-t"], exit_code=1)
    fake.on(["cat", "/var/lib/labctl/staging/" + name + "/deadman.pid"], exit_code=1)
    return fake


class Hosts:
    def __init__(self) -> None:
        self.fakes: dict[str, FakeTransport] = {}
        self.fresh: dict[str, list[FakeTransport]] = {}

    def factory(self, spec: Any) -> FakeTransport:
        return self.fakes.setdefault(spec.name, host_fake(spec.name))

    def fresh_factory(self, spec: Any) -> FakeTransport:
        fake = host_fake(spec.name)
        self.fresh.setdefault(spec.name, []).append(fake)
        return fake


def _inv() -> Inventory:
    return load_inventory(ROOT / "inventories/staging.yaml")


def _opts(hosts: Hosts, **kw: Any) -> ops.UpOptions:
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
    target = hosts.factory(inv.hosts.target)
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


def test_deadman_armed_only_where_guarded_right_before_the_change(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ops.DEADMAN_ENV, "1")  # shorter than a guarded change may take
    hosts = Hosts()
    report = ops.up(_inv(), _opts(hosts, guard_timeout=7.0))
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
    assert all(a[0] in ("<put>", "mv") or a[:3] == ("python3", "-c", NONEMPTY)
               for a in between), between
    from labctl.up.journal import load_local
    for name in ("online1", "target", "assistant"):
        journal = load_local("staging", name)
        assert journal is not None and journal.state == "up"
        assert (journal.deadman is not None) == (name == "target")


def test_up_records_log_marks_and_conntrack_for_verify(env: Path) -> None:
    from labctl.verify import fetch as verify

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


def test_failed_up_forgets_old_marks(env: Path) -> None:
    from labctl.verify import fetch as verify

    hosts = Hosts()
    inv = _inv()
    verify.save_marks(verify.Marks("staging", 1.0, [verify.LogMark("x", "/old", 9, 9)]))
    hosts.factory(inv.hosts.target).on_prefix(list(ROUTE_ADD), exit_code=2, stderr="nope")
    with pytest.raises(RemoteError):
        ops.up(inv, _opts(hosts))
    assert verify.load_marks("staging") is None
