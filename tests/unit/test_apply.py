"""labctl.up.apply: journal before mutation, probe -> no-op, failure marks the entry, undo, lock."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Tuple

import pytest

from labctl.errors import LabctlError
from labctl.hosts.journal import Journal, new_journal
from labctl.model import Change, ChangeKind
from labctl.transport.base import CommandFailed
from labctl.transport.fake import FakeTransport
from labctl.transport.textfile import unwrite_argv
from labctl.up import apply as ap
from labctl.up import lock as lk
from labctl.up.hooks import NO_HOOKS, KillAfter
from labctl.up.statedir import mkdir_argv

HDIR = "/s/demo/target"
ADD = ("ip", "route", "add", "10.79.1.0/24", "via", "10.77.1.30", "proto", "252")
DEL = ("ip", "route", "del", "10.79.1.0/24", "via", "10.77.1.30", "proto", "252")
PROBE = ("ip", "-4", "route", "show", "10.79.1.0/24", "proto", "252")
ROUTE = Change("target", "route", ChangeKind.ROUTE, "route pool via assistant", (ADD,), (DEL,),
               probe=("sh-probe",), noop_reason="route already there", guarded=True)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))


def _fake() -> FakeTransport:
    fake = FakeTransport("target")
    fake.on(["ip", "route", "show", "table", "all"], stdout="default via 10.77.1.254\n")
    fake.on(["iptables-save"], stdout="*filter\nCOMMIT\n")
    fake.on_prefix(["mv", "-f"])
    return fake


def _run(fake: FakeTransport) -> ap.HostRun:
    return ap.HostRun("target", fake, HDIR, new_journal("demo", "target", "r1", now=0.0),
                      clock=lambda: 1.0)


def _writes(fake: FakeTransport) -> list[int]:
    """Indexes of the calls that wrote the journal (labctl.transport.files)."""
    return [i for i, c in enumerate(fake.calls) if unwrite_argv(c.argv) is not None]


def _journal_written(fake: FakeTransport) -> Journal:
    last = fake.calls[_writes(fake)[-1]]
    return Journal.from_json(last.stdin or "")


def test_journal_is_written_before_the_change_runs() -> None:
    fake = _fake().on(["sh-probe"], exit_code=1).on(list(ADD))
    out = ap.apply_change(_run(fake), ROUTE)
    assert out.status == "applied" and out.changed
    first_write, add = _writes(fake)[0], fake.calls.index(
        next(c for c in fake.calls if c.argv == ADD))
    assert first_write < add
    # the journal written before the add already lists it as planned, with a snapshot
    before = Journal.from_json(fake.calls[first_write].stdin or "")
    assert before.entries[0].status == "planned"
    assert before.entries[0].snapshot.routes.startswith("default via")
    assert _journal_written(fake).entries[0].status == "applied"


def test_probe_in_place_is_a_noop_with_reason() -> None:
    fake = _fake().on(["sh-probe"])
    run = _run(fake)
    out = ap.apply_change(run, ROUTE)
    assert out.status == "noop" and not out.changed and out.reason == "route already there"
    assert ADD not in fake.commands
    assert run.journal.entries[0].status == "noop"


def test_failed_apply_marks_entry_and_raises_with_evidence() -> None:
    fake = _fake().on(["sh-probe"], exit_code=1)
    fake.on(list(ADD), exit_code=2, stderr="RTNETLINK answers: Network is unreachable")
    run = _run(fake)
    with pytest.raises(CommandFailed, match="Network is unreachable"):
        ap.apply_change(run, ROUTE)
    assert run.journal.entries[0].status == "failed"
    assert "Network is unreachable" in _journal_written(fake).entries[0].reason


def test_undo_probe_absent_and_present() -> None:
    fake = _fake().on(["sh-probe"], exit_code=1).on(list(ADD))
    run = _run(fake)
    ap.apply_change(run, ROUTE)
    fake.on(["sh-probe"]).on(list(DEL))
    out = ap.undo_entry(run, run.journal.entries[0])
    assert out.status == "undone" and DEL in fake.commands
    assert run.journal.in_place() == []


def test_undo_of_planned_entry_that_never_ran() -> None:
    fake = _fake()
    run = _run(fake)
    e = run.journal.plan_entry(
        Change("target", "x", ChangeKind.IPTABLES, "x", (("a",),), (("b",),)),
        ap.Snapshot(), 0.0)
    fake.on(["b"], exit_code=1, stderr="Bad rule (does a matching rule exist in that chain?)")
    out = ap.undo_entry(run, e)
    assert out.status == "undone" and "never applied" in out.reason


def test_undo_of_a_planned_entry_cut_off_between_its_commands_clears_what_ran() -> None:
    """labctl killed after a chain's `-N` but before its jump: the probe (the jump) finds it
    absent, yet the chain exists; the undo commands still run (their failures expected)."""
    fake = _fake()
    run = _run(fake)
    chain = Change("target", "chain", ChangeKind.IPTABLES, "chain",
                   (("iptables", "-N", "C"), ("iptables", "-I", "INPUT", "-j", "C")),
                   (("iptables", "-F", "C"), ("iptables", "-D", "INPUT", "-j", "C"),
                    ("iptables", "-X", "C")), probe=("iptables", "-C", "INPUT", "-j", "C"))
    e = run.journal.plan_entry(chain, ap.Snapshot(), 0.0)
    fake.on(["iptables", "-C", "INPUT", "-j", "C"], exit_code=1)
    fake.on(["iptables", "-F", "C"]).on(["iptables", "-X", "C"])
    fake.on(["iptables", "-D", "INPUT", "-j", "C"], exit_code=1, stderr="Bad rule")
    out = ap.undo_entry(run, e)
    assert out.status == "undone"
    assert ("iptables", "-X", "C") in fake.commands      # the half-made chain is gone
    # the same chain whose jump failed (`up` then rolls back a failed entry): also cleared
    failed = run.journal.plan_entry(
        Change("target", "chain2", ChangeKind.IPTABLES, "chain", chain.apply, chain.undo,
               probe=chain.probe), ap.Snapshot(), 0.0)
    run.journal.mark(failed, "failed", 1.0, "iptables: No chain/target/match by that name")
    fake.calls.clear()
    assert ap.undo_entry(run, failed).status == "undone"
    assert ("iptables", "-X", "C") in fake.commands
    # an applied entry whose probe finds it absent is not touched
    fake2 = _fake().on(["sh-probe"], exit_code=1).on(list(ADD))
    run2 = _run(fake2)
    ap.apply_change(run2, ROUTE)
    fake2.on(["sh-probe"], exit_code=1)
    assert ap.undo_entry(run2, run2.journal.entries[0]).status == "undone"
    assert DEL not in fake2.commands


def test_failed_undo_of_applied_entry_is_reported_and_kept() -> None:
    fake = _fake().on(["sh-probe"], exit_code=1).on(list(ADD))
    run = _run(fake)
    ap.apply_change(run, ROUTE)
    fake.on(["sh-probe"]).on(list(DEL), exit_code=2, stderr="boom")
    out = ap.undo_entry(run, run.journal.entries[0])
    assert out.status == "undo-failed" and "boom" in out.reason
    assert run.journal.in_place()  # still listed: the next `down` retries it


def test_lock_taken_refused_and_stale_broken() -> None:
    fake = FakeTransport("target").on(mkdir_argv(HDIR)).on(["mkdir", HDIR + "/lock"])
    assert lk.acquire_lock(fake, HDIR) == []
    assert json.loads(fake.files[HDIR + "/lock/owner.json"])["pid"] == os.getpid()

    busy = FakeTransport("target").on(mkdir_argv(HDIR))
    busy.on(["mkdir", HDIR + "/lock"], exit_code=1, stderr="File exists")
    busy.on(["cat", HDIR + "/lock/owner.json"], stdout=json.dumps(lk._owner()))
    with pytest.raises(LabctlError, match="holds the lock"):
        lk.acquire_lock(busy, HDIR)

    stale = FakeTransport("target").on(mkdir_argv(HDIR)).on(["rm", "-rf", HDIR + "/lock"])
    stale.on(["mkdir", HDIR + "/lock"])
    stale.on(["mkdir", HDIR + "/lock"], exit_code=1, times=1)
    dead = {**lk._owner(), "pid": 2**22 + 12345}
    stale.on(["cat", HDIR + "/lock/owner.json"], stdout=json.dumps(dead))
    notes = lk.acquire_lock(stale, HDIR)
    assert notes and "stale" in notes[0]


def test_a_lock_whose_owner_is_still_being_written_is_not_broken() -> None:
    """Two `up`s at once (a CI run): the loser found the winner's lock before its owner file
    and broke it as stale, so the winner lost its lock. A missing owner is waited for."""
    racing = FakeTransport("target").on(mkdir_argv(HDIR))
    racing.on(["mkdir", HDIR + "/lock"], exit_code=1, stderr="File exists")
    racing.on(["cat", HDIR + "/lock/owner.json"], stdout=json.dumps(lk._owner()))
    racing.on(["cat", HDIR + "/lock/owner.json"], exit_code=1, stderr="No such file", times=2)
    with pytest.raises(LabctlError, match="holds the lock"):
        lk.acquire_lock(racing, HDIR)
    assert ("rm", "-rf", HDIR + "/lock") not in racing.commands


def test_kill_hook_only_fires_on_its_step() -> None:
    killed: list[str] = []
    hooks = KillAfter("ship", kill=lambda: killed.append("SIGKILL"))
    hooks.after("lock")
    assert killed == []
    hooks.after("ship")
    assert killed == ["SIGKILL"]
    NO_HOOKS.after("ship")  # production hooks: nothing happens, nothing is allowed
    assert killed == ["SIGKILL"] and not NO_HOOKS.allow_ssh_cut


class _Trips(FakeTransport):
    """A fake host that counts round trips (top-level `run` calls, a batch or chain is one)."""

    trips = 0
    depth = 0

    def run(self, argv, *, sudo=True, timeout=None, stdin=None):  # type: ignore[no-untyped-def]
        self.trips += self.depth == 0
        self.depth += 1
        try:
            return super().run(argv, sudo=sudo, timeout=timeout, stdin=stdin)
        finally:
            self.depth -= 1


def _rule(n: int) -> Change:
    add = ("iptables", "-w", "-A", "LABCTL-demo", "-s", f"10.77.1.{n}/32", "-j", "ACCEPT")
    return Change("assistant", f"rule-{n}", ChangeKind.IPTABLES, f"rule {n}", (add,),
                  (("iptables", "-w", "-D", *add[3:]),), probe=("iptables", "-w", "-C",
                                                               *add[3:]))


def _rules_host() -> Tuple[_Trips, ap.HostRun]:
    """The assistant with a fresh journal, counting round trips: snapshots answer, no rule of
    ``_rule`` is in place yet and adding one works."""
    fake = _Trips("assistant")
    fake.on(["ip", "route", "show", "table", "all"], stdout="default via 10.77.1.254\n")
    fake.on(["iptables-save"], stdout="*filter\nCOMMIT\n")
    fake.on_prefix(["iptables", "-w", "-C"], exit_code=1).on_prefix(["iptables", "-w", "-A"])
    run = ap.HostRun("assistant", fake, HDIR, new_journal("demo", "assistant", "r1", now=0.0),
                     clock=lambda: 1.0)
    return fake, run


def test_unguarded_changes_take_one_round_trip_each_journal_first() -> None:
    """Each rule: its journal entry (planned, with the snapshot taken right after the rule
    before it) written on the host, then the rule, then the next rule's snapshot and probe:
    one round trip; the rule never runs if the journal write failed."""
    fake, run = _rules_host()
    rules = [_rule(n) for n in (10, 11, 12)]
    for i, rule in enumerate(rules):
        entry = ap.prepare_change(run, rule)
        then = rules[i + 1] if i + 1 < len(rules) else None
        assert ap.execute_change(run, rule, entry, lazy=True, then=then).status == "applied"
    assert fake.trips == 1 + len(rules)   # the first snapshot + probe, then one per rule
    for rule in rules:
        add = fake.calls.index(next(c for c in fake.calls if c.argv == rule.apply[0]))
        wrote = [i for i in _writes(fake) if i < add][-1]
        planned = Journal.from_json(fake.calls[wrote].stdin or "")
        assert [e.status for e in planned.entries][-1] == "planned"
        assert planned.entries[-1].step == rule.step
        assert planned.entries[-1].snapshot.routes.startswith("default via")
    assert [e.status for e in run.journal.entries] == ["applied"] * 3
    run.save()                          # the last "applied" reaches the host with the next write
    assert [e.status for e in _journal_written(fake).entries] == ["applied"] * 3
    # a journal write that fails: the rule is not run
    fake.on_prefix(["sh", "-c", "umask 077 && cat > \"$1\" && mv -f \"$1\" \"$2\""],
                   exit_code=1, stderr="No space left on device").on_prefix(["rm", "-f"])
    rule = _rule(13)
    entry = ap.prepare_change(run, rule)
    with pytest.raises(CommandFailed, match="No space left"):
        ap.execute_change(run, rule, entry, lazy=True)
    assert rule.apply[0] not in fake.commands


def test_each_undo_probes_the_next_entry_with_its_journal_write() -> None:
    fake, run = _rules_host()
    rules = [_rule(n) for n in (10, 11, 12)]
    for rule in rules:
        ap.apply_change(run, rule)
    fake.on_prefix(["iptables", "-w", "-C"]).on_prefix(["iptables", "-w", "-D"])
    todo = list(reversed(run.journal.entries))
    fake.trips = 0
    ap.save_probing(run, todo[0])
    for entry, then in zip(todo, [*todo[1:], None]):
        assert ap.undo(run, entry, then).status == "undone"
    # one round trip for the first probe and undo (with a journal write), then per entry: its
    # journal write with the next entry's probe and (found in place, one command) its undo
    assert fake.trips == 1 + len(rules)
    assert run.journal.in_place() == [] and not run.probed
    deletes = [c for c in fake.commands if c[:3] == ("iptables", "-w", "-D")]
    assert len(deletes) == 3


def test_a_chained_undo_never_runs_for_an_absent_entry_and_multi_command_undos_stay_whole() -> None:
    fake = _Trips("assistant")
    fake.on(["ip", "route", "show", "table", "all"], stdout="").on(["iptables-save"], stdout="")
    fake.on_prefix(["iptables", "-w", "-C"], exit_code=1).on_prefix(["iptables", "-w", "-A"])
    run = ap.HostRun("assistant", fake, HDIR, new_journal("demo", "assistant", "r1", now=0.0),
                     clock=lambda: 1.0)
    ap.apply_change(run, _rule(10))
    chain = Change("assistant", "chain", ChangeKind.IPTABLES, "chain", (("iptables", "-N", "X"),),
                   (("iptables", "-F", "X"), ("iptables", "-X", "X")), probe=("probe-x",))
    fake.on(["probe-x"], exit_code=1).on(["iptables", "-N", "X"])
    ap.apply_change(run, chain)
    fake.on(["probe-x"]).on_prefix(["iptables", "-F"], exit_code=1).on(["iptables", "-X", "X"])
    fake.on_prefix(["iptables", "-w", "-D"])    # rule-10 is gone: its probe (-C) fails
    todo = list(reversed(run.journal.entries))
    ap.save_probing(run, todo[0])
    for entry, then in zip(todo, [*todo[1:], None]):
        ap.undo(run, entry, then)
    assert ("iptables", "-X", "X") in fake.commands   # run despite -F failing (a batch)
    assert not [c for c in fake.commands if c[:3] == ("iptables", "-w", "-D")]
    assert [(o.step, o.status) for o in run.outcomes[-2:]] == [("chain", "undo-failed"),
                                                              ("rule-10", "undone")]
    assert run.journal.entries[0].reason == "not in place, nothing to undo"
