"""The apply half of `up` (after preflight): lock -> ship -> journals -> changes (each host's
dead-man timer armed right before its first guarded change) -> daemons -> confirm over NEW
connections (a host with no daemon left to start, the target, while the others start theirs)
-> log marks -> local state. Any failure undoes what was applied, newest first;
a host that a guarded change cut off is left to its own dead-man timer (see `PathCut`).
`labctl.up.run.up` runs it; the options and report types live in labctl.up.options.
Daemons are changes of the plan like any other (built by labctl.up.launch): a DAEMON change is
journaled, started, and waited on until its `Readiness` holds.

Every phase runs across hosts at once (bounded by the pool's `parallel`): the changes in two
stages, each host's own changes in plan order within a stage: routes/rules/sysctls and the
daemons that listen (intercept: the `changes` checkpoint follows them), then the daemons that
connect to those (tcpcopy). A stage waits for every host, so one host failing never loses the
others' outcomes; the rollback then undoes each host's changes newest first, hosts in parallel.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from labctl.errors import LabctlError, RemoteError
from labctl.hosts import daemons as dm
from labctl.hosts.journal import (
    LabRecord,
    Snapshot,
    local_lab_dir,
    new_journal,
    save_local,
    save_record,
)
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import Change
from labctl.transport.base import CommandFailed, ConnectionLost, Result, Transport
from labctl.transport.pool import HostPool, ssh_factory
from labctl.up import deadman
from labctl.up.apply import (
    ALIVE,
    HostRun,
    PathCut,
    StepOutcome,
    execute_change,
    prepare_change,
    undo,
)
from labctl.up.exclusive import refuse_if_live, release_locks, release_one, runs_dir, take_locks
from labctl.up.fanout import by_host, first_failure, host_errors, hosts_error, run_stage
from labctl.up.launch import key_path, record_of
from labctl.up.options import KEY_NAME, UpOptions, UpReport
from labctl.up.ship import ShipOutcome, build_engine, remote_pyz, ship_host
from labctl.verify.fetch import MARKS_NAME, mark_logs, save_marks


class UpRun:
    """One `up` after preflight: owns the host runs and the undo order."""

    def __init__(self, inv: Inventory, opts: UpOptions, pool: HostPool,
                 facts: dict[str, Any], report: UpReport):
        self.inv, self.opts, self.pool, self.facts, self.report = inv, opts, pool, facts, report
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.runs: dict[str, HostRun] = {}
        self.locked: list[str] = []
        self.order: list[tuple[str, int]] = []  # (host, entry index) in apply order
        self.after = opts.deadman_seconds
        self.guard_timeout = opts.guard_timeout
        self.checkpoint = opts.hooks.after
        self.cut: dict[str, PathCut] = {}  # hosts a guarded change cut off: never talk to them
        self.then: dict[tuple[str, str], Change] = {}  # (host, step) -> its next change there

    def say(self, msg: str) -> None:
        self.opts.progress(msg)

    def run(self) -> None:
        try:
            journals: dict[str, Result] = {}
            self.lock(journals)
            refuse_if_live(self.pool, self.inv, journals)
        except (LabctlError, OSError) as exc:
            # nothing changed, and the local record may be the lock holder's: leave it alone
            self.report.errors.update(host_errors(exc))
            self.unlock()
            raise
        try:
            self.forget_marks()
            self.save_record("applying")
            self.ship()
            self.journals()
            self.apply()
            self.confirm([n for n, r in self.runs.items() if r.journal.state != "up"])
            self.checkpoint("confirm")
            self.mark_logs()
            self.save_record("up")
            self.checkpoint("state")
        except (LabctlError, OSError) as exc:
            self.report.errors.update(host_errors(exc))
            self.note_cut(exc)
            self.say(f"up failed: {getattr(exc, 'message', exc)}; rolling back")
            self.roll_back()
            self.save_record("failed")
            if self.cut:
                raise self.cut_error() from exc
            if len(self.report.errors) > 1:   # several hosts failed: name every one
                raise hosts_error(self.report.errors, getattr(exc, "hint", None)) from exc
            raise
        finally:
            self.unlock()

    def unlock(self) -> None:
        release_locks(self.pool, self.inv, [n for n in self.locked if n not in self.cut])
        self.locked.clear()

    def runs_dir(self, name: str) -> str:
        return runs_dir(self.inv, name)

    def lock(self, journals: Optional[dict[str, Result]] = None) -> None:
        self.report.notes += take_locks(self.pool, self.inv, self.locked, journals)
        self.checkpoint("lock")

    def save_record(self, state: str) -> None:
        save_record(LabRecord(
            lab=self.inv.lab, inventory_path=self.opts.inventory_path,
            inventory_text=self.opts.inventory_text, hosts=[h.name for h in self.inv.all_hosts()],
            state=state, run_id=self.run_id, updated_at=time.time()))

    def ship(self) -> None:
        self.say("shipping the engine")
        artifact = build_engine()
        key = self.local_key()
        needs_key = {h.name for h in self.inv.hosts.online} | {self.inv.intercept_host.name}

        def ship_one(spec: HostSpec, t: Transport) -> ShipOutcome:
            return ship_host(t, artifact, self.runs_dir(spec.name),
                             (key, self.key_path(spec.name)) if spec.name in needs_key else None)

        outcomes = self.pool.each(ship_one, phase="ship")
        self.report.shipped += [out.unwrap() for out in outcomes.values()]
        self.checkpoint("ship")

    def local_key(self) -> Path:
        """The intercept channel key: the inventory's, or one generated per lab and kept locally."""
        if self.inv.intercept.key_file:
            return Path(os.path.expanduser(self.inv.intercept.key_file))
        local = local_lab_dir(self.inv.lab) / KEY_NAME
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        return local

    def key_path(self, name: str) -> str:
        return key_path(self.inv, name)

    def journals(self) -> None:
        def journal_one(spec: HostSpec, t: Transport) -> HostRun:
            fact = self.facts.get(spec.name)
            run = HostRun(spec.name, t, self.runs_dir(spec.name),
                          new_journal(self.inv.lab, spec.name, self.run_id),
                          systemd=bool(getattr(fact, "systemd", False)), hooks=self.opts.hooks)
            self.runs[spec.name] = run  # before saving: a failed save is still rolled back
            # the local copy now; on the host with its first change (every change writes the
            # journal on the host before it runs) or with the confirm stage
            run.save(lazy=True)
            return run

        outcomes = self.pool.each(journal_one, phase="journal")
        self.runs = {name: self.runs[name] for name in outcomes if name in self.runs}
        for out in outcomes.values():
            out.unwrap()
        self.checkpoint("journal")

    def arm(self, run: HostRun, step: str) -> None:
        """Arm the host's dead-man timer right before its first guarded change (journaled as
        planned already, so the rollback knows it). Never shorter than that change may take
        (`deadman.min_after`), so it cannot fire before the change is applied."""
        after = max(self.after, deadman.min_after(self.guard_timeout))
        self.say(f"[{run.name}] arming the dead-man rollback ({after:g}s) before {step}")
        run.journal.deadman = deadman.arm(run.transport, remote_pyz(run.hdir), run.hdir,
                                          self.inv.lab, after, run.systemd)
        run.save()
        self.checkpoint("deadman")

    def apply(self) -> None:
        """Every change of the plan: routes, rules and sysctls, then the listening daemons, then
        the connecting ones; hosts in parallel, each host's changes in plan order."""
        assert self.report.plan is not None
        changes = self.report.plan.changes
        first = [c for c in changes if c.daemon is None or c.daemon.ready.kind == "listening"]
        self.stage("apply", first, self.apply_or_start)
        self.checkpoint("changes")
        rest = [c for c in changes if c not in first]
        # the hosts with nothing left to start (the target with its guarded route) are
        # confirmed while the daemons start elsewhere; the others after them (`run`)
        done = [n for n in self.runs if n not in {c.host for c in rest}]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labctl-confirm") as ex:
            early = ex.submit(self.confirm, done)
            try:
                self.stage("start", rest, self.start_daemon)
            except BaseException:
                failed = early.exception()   # waits: no confirm runs on during a rollback
                if isinstance(failed, (LabctlError, OSError)):
                    self.report.errors.update(host_errors(failed))
                raise
            early.result()
        self.checkpoint("daemons")

    def apply_or_start(self, change: Change) -> None:
        if change.daemon is None:
            self.apply_change(change)
        else:
            self.start_daemon(change)

    def stage(self, phase: str, changes: list[Change], do: Callable[[Change], None]) -> None:
        """`do` each change (labctl.up.fanout.run_stage). Every host's failure is reported
        (and checked for a cut path); the first one is raised."""
        for host_changes in by_host(changes).values():  # each change's successor on its host
            self.then.update({(c.host, c.step): n for c, n in zip(host_changes,
                                                                  host_changes[1:])})
        outcomes = run_stage(self.pool, phase, changes, do)
        first = first_failure(outcomes)
        if first is None:
            return
        for out in outcomes.values():
            if out.error is not None and out.error is not first:
                self.report.errors.update(host_errors(out.error, out.host))
                self.note_cut(out.error)
        raise first

    def apply_change(self, change: Change) -> None:
        run = self.runs[change.host]
        self.say(f"[{change.host}] {change.description}")
        self.order.append((change.host, len(run.journal.entries)))
        try:
            entry = prepare_change(run, change)
            if change.guarded and run.journal.deadman is None:
                self.arm(run, change.step)
            self.report.steps.append(execute_change(
                run, change, entry, self.guard_timeout, lazy=True,
                then=self.then.get((change.host, change.step))))
        except PathCut as exc:
            self.cut[change.host] = exc
            self.report.steps.append(StepOutcome(
                change.host, change.step, change.description, "failed",
                "cut SSH: left to the dead-man rollback on the host"))
            raise
        except LabctlError:
            if run.outcomes and run.outcomes[-1].step == change.step:
                self.report.steps.append(run.outcomes[-1])
            raise
        self.checkpoint(f"change:{change.step}")

    def start_daemon(self, change: Change) -> None:
        """Journal the daemon (entry and record) BEFORE starting it, start it, wait until ready."""
        assert change.daemon is not None
        run = self.runs[change.host]
        self.say(f"[{change.host}] {change.description}")
        rec = record_of(change)
        entry = run.journal.plan_entry(change, Snapshot(), time.time())
        run.journal.daemons.append(rec)
        self.order.append((change.host, len(run.journal.entries) - 1))
        # journaled on the host, then (only then) started: one round trip
        dm.started(rec, run.save_then(dm.start_argvs(rec)))
        run.journal.mark(entry, "applied", time.time())
        run.save(lazy=True)    # on the host with the confirm stage's write
        self.report.steps.append(run.record(entry, "applied"))
        ready, timeout = change.daemon.ready, self.opts.ready_timeout
        if ready.kind == "listening":
            dm.wait_listening(run.transport, rec, ready.port, timeout=timeout)
        else:
            dm.wait_connected(run.transport, rec, timeout=timeout)
        self.checkpoint(f"daemon:{change.daemon.name}")

    def confirm(self, names: list[str]) -> None:
        """Over a NEW connection per host of `names`: proves a fresh SSH login still works
        after that host's changes, then disarms its dead-man timer."""
        if not names:
            return
        guarded = [n for n in names if self.runs[n].journal.deadman is not None]
        if guarded:
            self.say(f"confirming over new SSH connections ({', '.join(guarded)})")
        factory = self.opts.fresh_factory or self.opts.factory or ssh_factory(self.inv)

        def confirm_one(run: HostRun) -> None:
            if run.journal.deadman is not None:   # else no guarded change: nothing to confirm
                deadman.confirm_fresh(functools.partial(factory, self.inv.host(run.name)),
                                      run.journal.deadman, run.name)
            run.journal.state = "up"
            run.save()

        runs = {n: self.runs[n] for n in names}
        for out in self.pool.run(runs, confirm_one, "confirm", _run_name).values():
            out.unwrap()

    def note_cut(self, exc: BaseException) -> None:
        """A lost link, or a timeout, on a host with a guarded change in place: that change
        cut the path (it may show only after the change's own commands answered)."""
        host = getattr(exc, "host", None)
        if host is None or host in self.cut or host not in self.runs:
            return
        lost = isinstance(exc, ConnectionLost) or (
            isinstance(exc, CommandFailed) and exc.result.timed_out)
        guarded = [e for e in self.runs[host].journal.entries
                   if e.guarded and e.status in ("applied", "planned")]
        if lost and guarded:
            self.cut[host] = PathCut(host, guarded[-1].step, getattr(exc, "message", str(exc)))

    def reachable(self, name: str) -> bool:
        """Before rolling back over the run's connection to a host with guarded changes in
        place: does it still answer within the guard timeout? If not, it is cut."""
        if name in self.cut:
            return False
        run = self.runs[name]
        guarded = [e for e in run.journal.entries if e.guarded and e.may_be_in_place]
        if not guarded:
            return True
        try:
            res = run.run(ALIVE, timeout=self.guard_timeout)
            if not res.timed_out:
                return True
            detail = f"no answer within {self.guard_timeout:g}s"
        except LabctlError as exc:
            detail = exc.message
        self.cut[name] = PathCut(name, guarded[-1].step, detail)
        return False

    def cut_error(self) -> RemoteError:
        """What the user reads when a guarded change cut SSH to one or more hosts."""
        parts = []
        for name, cut in self.cut.items():
            rec = self.runs[name].journal.deadman
            when = (f"restores it at {_clock(rec.armed_at + rec.after)}" if rec is not None
                    else "was not armed: restore it from the host's console")
            parts.append(f"the change {cut.step} on {name} cut SSH ({cut.detail}); "
                         f"the dead-man rollback on the host {when}")
        others = [n for n in self.runs if n not in self.cut]
        hint = "labctl rolled back " + (", ".join(others) if others else "nothing else")
        hint += "; once SSH is back, `labctl down` cleans up and reports what was undone"
        return RemoteError("; ".join(parts), hint=hint, host=next(iter(self.cut)))

    def forget_marks(self) -> None:
        """Log marks of an earlier `up` would make `verify` compare the wrong stretch."""
        (local_lab_dir(self.inv.lab) / MARKS_NAME).unlink(missing_ok=True)

    def mark_logs(self) -> None:
        """Where every access log ends and the conntrack counts now, so `verify --since-up`
        reads exactly the bytes written after `up` (a failure only costs that precision).
        Each host's lock is released right after its marks (nothing more is done there)."""
        try:
            save_marks(mark_logs(self.inv, self.pool,
                                 then=functools.partial(release_one, self.inv, self.locked)))
        except (LabctlError, OSError) as exc:
            self.report.notes.append(
                f"could not record where the access logs end ({getattr(exc, 'message', exc)}); "
                "`verify --since-up` will compare by time instead")

    def roll_back(self) -> None:
        """Undo what this `up` did, newest first, across hosts; errors are reported, not raised.
        Hosts a change cut off are left to their dead-man timer (talking to them would hang)."""
        for name in self.cut:
            self.say(str(self.cut[name].message) + "; leaving it to the dead-man rollback")
            self.runs[name].journal.state = "failed"
            save_local(self.runs[name].journal)
        per_host: dict[str, list[int]] = {name: [] for name in self.runs}
        for name, idx in self.order:
            per_host[name].append(idx)
        self.pool.run({n: n for n in per_host},
                      lambda name: self.roll_back_host(name, per_host[name]), "rollback", str)

    def roll_back_host(self, name: str, indices: list[int]) -> None:
        """One host's part of the rollback: its entries newest first, then the dead-man off."""
        run = self.runs[name]
        for idx in reversed(indices):
            if idx >= len(run.journal.entries) or not self.reachable(name):
                continue  # (the change failed before it was journaled)
            entry = run.journal.entries[idx]
            if not entry.may_be_in_place:
                continue
            try:
                self.report.steps.append(undo(run, entry))
            except (LabctlError, OSError) as exc:
                self.report.errors.setdefault(name, f"rollback: {exc}")
        if name in self.cut:
            return
        try:
            if run.journal.deadman is not None:
                deadman.cancel(run.transport, run.journal.deadman)
            run.journal.state = "rolled_back"
            run.save()
        except (LabctlError, OSError) as exc:
            self.report.errors.setdefault(name, f"rollback: {exc}")


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _run_name(run: HostRun) -> str:
    return run.name
