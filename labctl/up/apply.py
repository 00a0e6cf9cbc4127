"""Execute changes on hosts: journal first, probe, apply, and undo in reverse.

A `HostRun` bundles one host's transport, state directory and journal. Every mutation goes:
journal entry written (remote, atomically, and the local copy) -> probe (exit 0: no-op with a
reason) -> apply argvs -> entry marked applied/failed. "changed" is derived from the entries'
statuses, never set by hand. `undo_entry` is what `down` and a failed `up` run, newest first.
The per-host lock is labctl.up.lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from labctl.errors import RemoteError
from labctl.hosts import daemons as dm
from labctl.hosts.journal import (
    SNAPSHOT_ARGVS,
    Entry,
    Journal,
    Snapshot,
    journal_path,
    save_local,
    snapshot_and,
    snapshot_of,
    write_remote,
)
from labctl.model import Change, ChangeKind
from labctl.transport.base import CommandFailed, Result, Transport
from labctl.transport.batch import run_batch, run_chain
from labctl.transport.textfile import temp_path, write_argv
from labctl.up.hooks import NO_HOOKS, Hooks

#: Kinds whose changes touch routes or rules (the journal snapshots those before each one).
SNAPSHOT_KINDS = (ChangeKind.ROUTE.value, ChangeKind.IPTABLES.value)


@dataclass
class StepOutcome:
    """One executed (or skipped, or undone) step on one host."""

    host: str
    step: str
    description: str
    status: str  # applied | noop | failed | undone | undo-failed
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.status in ("applied", "undone")


@dataclass
class HostRun:
    """One host during an `up` or `down`."""

    name: str
    transport: Transport
    hdir: str
    journal: Journal
    sudo: bool = True
    systemd: bool = False
    clock: Callable[[], float] = time.time
    outcomes: list[StepOutcome] = field(default_factory=list)
    hooks: Hooks = NO_HOOKS
    #: a change's probe, run with its snapshot before it was journaled: step -> in place
    probed: dict[str, bool] = field(default_factory=dict)
    #: changes journaled as planned here but not yet on the host: written with their commands
    deferred: set[str] = field(default_factory=set)
    #: the next change's snapshot, taken right after the change before it (same round trip)
    prefetched: dict[str, Snapshot] = field(default_factory=dict)
    #: a single-command undo run right after its probe found it in place (`save_probing`)
    undone: dict[str, Result] = field(default_factory=dict)

    @property
    def journal_file(self) -> str:
        return journal_path(self.hdir)

    def run(self, argv: list[str] | tuple[str, ...], timeout: Optional[float] = None) -> Result:
        return self.transport.run(list(argv), sudo=self.sudo, timeout=timeout)

    def save(self, lazy: bool = False) -> None:
        """Write the journal on the host (atomic) and its local copy. `lazy`: the local copy
        now, the host's with the next write (`save_then` or `save`): only for marking an
        unguarded change applied — until then the host's journal says it is planned, which
        every rollback treats as "may be in place" (probed, then undone)."""
        self.journal.updated_at = self.clock()
        if lazy:
            save_local(self.journal)
            return
        write_remote(self.transport, self.journal_file, self.journal, sudo=self.sudo)
        save_local(self.journal)

    def save_then(self, argvs: Sequence[Sequence[str]],
                  timeout: Optional[float] = None) -> list[Result]:
        """Write the journal on the host and, only once it is written, run `argvs` in order up
        to the first that fails: one round trip where the host runs chains (the local copy is
        written first). Their results; raises CommandFailed when the journal write failed."""
        self.journal.updated_at = self.clock()
        save_local(self.journal)
        tmp, path = temp_path(self.journal_file), self.journal_file
        got = run_chain(self.transport, [write_argv(tmp, path), *argvs],
                        stdin=self.journal.to_json(), sudo=self.sudo, timeout=timeout)
        if got is None:                  # no chains on this host: one command at a time
            write_remote(self.transport, path, self.journal, sudo=self.sudo)
            got = [Result(self.name, ("true",), 0)]
            for argv in argvs:
                got.append(self.run(list(argv), timeout=timeout))
                if not got[-1].ok:
                    break
        if not got[0].ok:
            self.run(["rm", "-f", tmp])
            got[0].check()
        return got[1:]

    def record(self, entry: Entry, status: str) -> StepOutcome:
        out = StepOutcome(self.name, entry.step, entry.description, status, entry.reason)
        self.outcomes.append(out)
        return out


def has_systemd(transport: Transport) -> bool:
    """sd_booted(): the host runs systemd as init (read-only check)."""
    return transport.run(["test", "-d", "/run/systemd/system"]).ok


def _fail_reason(res: Result) -> str:
    tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
    return f"`{' '.join(res.argv)}` exited {res.exit_code}: {' / '.join(tail) or '(no output)'}"


class PathCut(RemoteError):
    """A guarded change left its host unreachable: no answer within the guard timeout, or the
    SSH connection dropped. Nothing more is sent to that host; its dead-man timer undoes it."""

    def __init__(self, host: str, step: str, detail: str):
        super().__init__(f"the change {step} on {host} cut SSH ({detail})", host=host)
        self.step = step
        self.detail = detail


def apply_change(run: HostRun, change: Change,
                 guard_timeout: Optional[float] = None) -> StepOutcome:
    """Journal, probe, apply one change. Raises CommandFailed (entry marked failed) on error,
    PathCut when a guarded change (with `guard_timeout`) loses the host."""
    return execute_change(run, change, prepare_change(run, change), guard_timeout)


def prepare_change(run: HostRun, change: Change) -> Entry:
    """Snapshot (routes/rules) and journal the change as planned, on the host, BEFORE it runs.
    A route/rule change's probe is run with its snapshot (one round trip); `execute_change`
    uses that answer (nothing changes on the host in between: the lock is held)."""
    snap = run.prefetched.pop(change.step, Snapshot())
    if change.kind.value in SNAPSHOT_KINDS and change.step not in run.probed:
        # the probe (read-only) in the same round trip
        snap, probed = snapshot_and(run.transport, [change.probe] if change.probe else [],
                                    run.sudo)
        if probed:
            run.probed[change.step] = probed[0].ok
    entry = run.journal.plan_entry(change, snap, run.clock())
    if change.guarded or not change.apply:
        run.save()
    else:   # on the host with its commands, in one round trip (`execute_change`)
        run.deferred.add(change.step)
    return entry


#: Run after a guarded change: an answer proves the SSH path survived it.
ALIVE = ("true",)


def _guarded(run: HostRun, change: Change, argv: list[str] | tuple[str, ...],
             timeout: Optional[float]) -> Result:
    """Run one command of a guarded change: a timeout or a lost link means the change cut SSH."""
    if timeout is None or not change.guarded:
        return run.run(argv)
    try:
        res = run.run(argv, timeout=timeout)
    except RemoteError as exc:
        raise PathCut(run.name, change.step, f"the SSH connection dropped: {exc.message}") \
            from None
    if res.timed_out:
        raise PathCut(run.name, change.step, f"`{' '.join(argv)}` got no answer within "
                      f"{timeout:g}s")
    return res


def _look_ahead(then: Optional[Change]) -> list[list[str]]:
    """What `prepare_change` will read for `then` (its snapshot and probe), to run right after
    the change before it, in that change's round trip; nothing when `then` needs none."""
    if then is None or then.kind.value not in SNAPSHOT_KINDS or not then.probe:
        return []
    return [*[list(a) for a in SNAPSHOT_ARGVS.values()], list(then.probe)]


def _keep_look(run: HostRun, then: Optional[Change], got: Sequence[Result]) -> None:
    if then is not None and len(got) == len(SNAPSHOT_ARGVS) + 1:  # (all of it ran)
        run.prefetched[then.step] = snapshot_of(got)
        run.probed[then.step] = got[-1].ok


def execute_change(run: HostRun, change: Change, entry: Entry,
                   guard_timeout: Optional[float] = None, lazy: bool = False,
                   then: Optional[Change] = None) -> StepOutcome:
    """Probe and apply a change journaled by `prepare_change`: a guarded change is on the
    host's journal already, any other is written there in the same round trip as its commands
    (which run only once it is written, and stop at the first that fails). `lazy`: an
    unguarded change's "applied" reaches the host with the next journal write. `then`: the
    host's next change, whose snapshot and probe then come with this change's round trip
    (taken after its commands: the state the next one starts from)."""
    probed = run.probed.pop(change.step, None)
    deferred = change.step in run.deferred
    run.deferred.discard(change.step)
    if change.probe and (probed if probed is not None else run.run(change.probe).ok):
        run.journal.mark(entry, "noop", run.clock(), change.noop_reason or "already in place")
        run.save()
        return run.record(entry, "noop")
    ran = None
    if deferred:
        look = _look_ahead(then)
        ran = run.save_then([*change.apply, *look])
        _keep_look(run, then, ran[len(change.apply):])
        ran = ran[:len(change.apply)]
    for i, argv in enumerate(change.apply):
        if ran is not None and i >= len(ran):
            break                        # (a chain stops only after a failure, seen below)
        res = ran[i] if ran is not None else _guarded(run, change, argv, guard_timeout)
        if not res.ok:
            run.journal.mark(entry, "failed", run.clock(), _fail_reason(res))
            run.save()
            run.record(entry, "failed")
            raise CommandFailed(res, hint=f"step {change.step}: {change.description}")
    run.hooks.after(f"applied:{change.step}")  # the change ran, the journal still says planned
    if change.guarded and guard_timeout is not None:  # before the slower journal upload
        _guarded(run, change, ALIVE, guard_timeout)
    run.journal.mark(entry, "applied", run.clock())
    run.save(lazy=lazy and not change.guarded)
    return run.record(entry, "applied")


def undo_entry(run: HostRun, entry: Entry, then: Optional[Entry] = None) -> StepOutcome:
    """Undo one entry that may be in place; never raises on a failed undo command. `then`: the
    entry undone next, whose probe runs with this one's journal write (`save_probing`).

    The probe tests the change as a whole (a chain: its jump; a rule per online host: all of
    them). A `planned` entry may have been cut off between its commands (labctl killed
    mid-change: the chain created, not yet hooked), a `failed` one stopped at a command after
    others had run, so when its probe finds it absent its undo commands still run, their
    failures expected."""
    probed, ran = run.probed.pop(entry.step, None), run.undone.pop(entry.step, None)
    partial = entry.status in ("planned", "failed")
    if entry.probe and not (probed if probed is not None else run.run(entry.probe).ok):
        if partial:
            _run_all(run, entry.undo)
        run.journal.mark(entry, "undone", run.clock(), "not in place, nothing to undo")
        save_probing(run, then)
        return run.record(entry, "undone")
    done = [ran] if ran is not None else _run_all(run, entry.undo)
    failures = [_fail_reason(res) for res in done if not res.ok]
    if failures and not partial:
        entry.reason = "undo failed: " + "; ".join(failures)
        save_probing(run, then)
        return run.record(entry, "undo-failed")
    reason = "undone" if not failures else "never applied (undo found nothing)"
    run.journal.mark(entry, "undone", run.clock(), reason)
    save_probing(run, then)
    return run.record(entry, "undone")


def save_probing(run: HostRun, then: Optional[Entry]) -> None:
    """`run.save()`, and once the journal is written, `then`'s probe in the same round trip
    (kept for `undo_entry`: nothing runs on the host in between), and when it finds `then` in
    place and `then` is undone by one command, that command too (a chain stops after a failed
    probe: an absent entry's undo never runs there)."""
    if then is None or not then.probe or then.kind == ChangeKind.DAEMON.value:
        run.save()
        return
    one = list(then.undo) if len(then.undo) == 1 else []
    got = run.save_then([then.probe, *one])
    if got:
        run.probed[then.step] = got[0].ok
    if got and got[0].ok and len(got) == 1 + len(one) and one:
        run.undone[then.step] = got[1]


def _run_all(run: HostRun, argvs: Sequence[Sequence[str]]) -> list[Result]:
    """Every argv, each whatever the others did (undo commands): one round trip if it can."""
    if not argvs:
        return []
    return run_batch(run.transport, argvs, sudo=run.sudo) or [run.run(list(a)) for a in argvs]


def stop_daemon_entry(run: HostRun, entry: Entry, then: Optional[Entry] = None) -> StepOutcome:
    """Stop the daemon an entry started (gracefully), keep its final stats, mark it undone."""
    name = entry.step.split(":", 1)[-1]
    for rec in run.journal.daemons:
        if rec.name == name and rec.stopped_at is None:
            dm.stop(run.transport, rec)
    run.journal.mark(entry, "undone", time.time(), "stopped (final stats kept)")
    save_probing(run, then)
    return run.record(entry, "undone")


def undo(run: HostRun, entry: Entry, then: Optional[Entry] = None) -> StepOutcome:
    """Undo one entry, whatever its kind: what `down` and a failed `up` run, newest first
    (`then`: the next one, probed with this one's journal write)."""
    if entry.kind == ChangeKind.DAEMON.value:
        return stop_daemon_entry(run, entry, then)
    return undo_entry(run, entry, then)
