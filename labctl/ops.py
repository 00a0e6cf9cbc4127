"""The core functions the CLI calls: `plan`, `up` (here), `status` and `down` (labctl.ops_down).

`up`: connect all hosts (parallel) -> facts -> preflight checks (errors block; `--force` skips
non-refusal errors only) -> plan -> lock each host -> ship the engine -> journal + dead-man timer
-> apply changes in order -> start daemons -> confirm over NEW connections -> local state.
Any failure after the lock undoes what was applied, newest first, and reports per host.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from labctl import daemons as dm
from labctl import deadman
from labctl.apply import (
    ALIVE,
    HostRun,
    PathCut,
    StepOutcome,
    acquire_lock,
    checkpoint,
    execute_change,
    prepare_change,
    release_lock,
    undo_entry,
)
from labctl.errors import LabctlError, PreflightRefused, RemoteError, UsageError
from labctl.inventory_models import HostSpec, Inventory
from labctl.journal import (
    LabRecord,
    Snapshot,
    host_dir,
    local_lab_dir,
    new_journal,
    save_local,
    save_record,
)
from labctl.model import Change, ChangeKind, Finding, Plan
from labctl.ship import ShipOutcome, build_engine, remote_pyz, ship
from labctl.transport.base import CommandFailed, ConnectionLost, Transport
from labctl.transport.pool import Factory, HostPool, run_parallel

#: Test-only: lets `up` proceed past the refusals that protect SSH (to prove the dead-man works).
ALLOW_SSH_CUT_ENV = "LABCTL_TEST_ALLOW_SSH_CUT"
DEADMAN_ENV = "LABCTL_DEADMAN_SECONDS"
#: Seconds a command of a guarded change (route, DROP rule) may take before labctl concludes
#: that the change cut its SSH path.
GUARD_ENV = "LABCTL_GUARD_TIMEOUT"
DEFAULT_GUARD_TIMEOUT = 10.0
KEY_NAME = "channel.key"

Progress = Callable[[str], None]


@dataclass
class UpOptions:
    dry_run: bool = False
    force: bool = False
    fix: bool = False
    deadman_seconds: float = deadman.DEFAULT_AFTER
    guard_timeout: float = DEFAULT_GUARD_TIMEOUT
    ready_timeout: float = 30.0
    inventory_path: str = ""
    inventory_text: str = ""
    progress: Progress = field(default=lambda msg: None)
    #: Transports for the run (tests: fakes) and for the confirming NEW connections.
    factory: Optional[Factory] = None
    fresh_factory: Optional[Factory] = None


@dataclass
class UpReport:
    lab: str
    findings: list[Finding] = field(default_factory=list)
    plan: Optional[Plan] = None
    dry_run: bool = False
    refused: bool = False
    shipped: list[ShipOutcome] = field(default_factory=list)
    steps: list[StepOutcome] = field(default_factory=list)
    daemons: dict[str, list[dm.DaemonStatus]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.errors

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)


# -- preflight / plan (read-only) -----------------------------------------------------------
#: Findings `--fix` resolves with planned changes (see labctl.plan.fix_changes_for).
FIXABLE = frozenset({"assistant.ip_forward", "target.rp_filter", "conntrack.usage",
                     "conntrack.headroom"})
CONNTRACK_IDS = frozenset({"conntrack.usage", "conntrack.headroom"})


def _checks(inv: Inventory, facts: dict[str, Any]) -> list[Finding]:
    from labctl.checks import run_checks
    from labctl.facts import gather_operator_facts

    return list(run_checks(inv, facts, gather_operator_facts()))


def _make_plan(inv: Inventory, facts: dict[str, Any], fix: bool,
               findings: list[Finding]) -> Plan:
    from labctl.plan import make_plan

    notrack = True if fix and any(f.id in CONNTRACK_IDS for f in findings) else None
    return make_plan(inv, facts, fix=fix, notrack=notrack)


def blocking(findings: list[Finding], force: bool, allow_ssh_cut: bool = False,
             fix: bool = False) -> list[Finding]:
    """Findings that stop `up`: errors; `--force` drops non-refusals; `--fix` drops what its
    changes fix; refusals always block (only the test-only hook lets them through)."""
    out = [f for f in findings if f.blocks or f.refusal]
    if force:
        out = [f for f in out if f.refusal]
    if fix:
        out = [f for f in out if f.refusal or f.id not in FIXABLE]
    if allow_ssh_cut:
        out = [f for f in out if not f.refusal]
    return out


def preflight(
    inv: Inventory, opts: UpOptions, pool: HostPool
) -> tuple[dict[str, Any], list[Finding], Plan]:
    """Facts, checks and the plan: read-only commands only."""
    from labctl.facts import gather_facts

    opts.progress("gathering facts")
    facts = gather_facts(pool, inv)
    checkpoint("facts")
    opts.progress("running preflight checks")
    findings = _checks(inv, facts)
    checkpoint("checks")
    the_plan = _make_plan(inv, facts, opts.fix, findings)
    checkpoint("plan")
    return facts, findings, the_plan


def open_pool(inv: Inventory, factory: Optional[Factory], progress: Progress) -> HostPool:
    progress(f"connecting to {len(inv.all_hosts())} hosts")
    pool = HostPool.open(inv, factory)
    checkpoint("connect")
    return pool


def plan(inv: Inventory, opts: Optional[UpOptions] = None) -> UpReport:
    """What `up` would do; touches nothing (read-only commands only)."""
    opts = opts or UpOptions()
    with open_pool(inv, opts.factory, opts.progress) as pool:
        _, findings, the_plan = preflight(inv, opts, pool)
    refused = bool(blocking(findings, opts.force, _allow_cut(), opts.fix))
    return UpReport(inv.lab, findings, the_plan, dry_run=True, refused=refused)


def _allow_cut() -> bool:
    return os.environ.get(ALLOW_SSH_CUT_ENV) == "1"


# -- up ---------------------------------------------------------------------------------------
def up(inv: Inventory, opts: UpOptions) -> UpReport:
    """Preflight, plan, and (unless dry-run or refused) apply and launch. See module doc."""
    report = UpReport(inv.lab, dry_run=opts.dry_run)
    with open_pool(inv, opts.factory, opts.progress) as pool:
        facts, report.findings, report.plan = preflight(inv, opts, pool)
        stop = blocking(report.findings, opts.force, _allow_cut(), opts.fix)
        if stop:
            report.refused = True
            return report
        if opts.dry_run:
            return report
        _Up(inv, opts, pool, facts, report).run()
    return report


class _Up:
    """One `up` after preflight: owns the host runs and the undo order."""

    def __init__(self, inv: Inventory, opts: UpOptions, pool: HostPool,
                 facts: dict[str, Any], report: UpReport):
        self.inv, self.opts, self.pool, self.facts, self.report = inv, opts, pool, facts, report
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.runs: dict[str, HostRun] = {}
        self.locked: list[str] = []
        self.order: list[tuple[str, int]] = []  # (host, entry index) in apply order
        self.after = float(os.environ.get(DEADMAN_ENV, opts.deadman_seconds))
        self.guard_timeout = float(os.environ.get(GUARD_ENV, opts.guard_timeout))
        self.cut: dict[str, PathCut] = {}  # hosts a guarded change cut off: never talk to them

    def say(self, msg: str) -> None:
        self.opts.progress(msg)

    def run(self) -> None:
        try:
            self.lock()
            self.forget_marks()
            self.save_record("applying")
            self.ship()
            self.journals()
            self.apply()
            self.start_daemons()
            self.confirm()
            self.mark_logs()
            self.save_record("up")
            checkpoint("state")
        except (LabctlError, OSError) as exc:
            self.report.errors.update(_host_errors(exc))
            self.note_cut(exc)
            self.say(f"up failed: {getattr(exc, 'message', exc)}; rolling back")
            self.roll_back()
            self.save_record("failed")
            if self.cut:
                raise self.cut_error() from exc
            raise
        finally:
            for name in self.locked:
                if name not in self.cut:
                    release_lock(self.pool.transport(name), self.runs_dir(name))

    def runs_dir(self, name: str) -> str:
        return host_dir(self.inv.state_dir, self.inv.lab, name)

    def lock(self) -> None:
        def lock_one(spec: HostSpec, t: Transport) -> list[str]:
            notes = acquire_lock(t, self.runs_dir(spec.name))
            self.locked.append(spec.name)
            return notes

        for out in self.pool.each(lock_one).values():  # every host tried; first error raised
            self.report.notes += out.unwrap()
        checkpoint("lock")

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
            out = ship(t, artifact, self.runs_dir(spec.name), sudo=True)
            if spec.name in needs_key:
                t.put(str(key), self.key_path(spec.name), mode=0o600)
            return out

        outcomes = self.pool.each(ship_one)
        self.report.shipped += [out.unwrap() for out in outcomes.values()]
        checkpoint("ship")

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
        return f"{self.runs_dir(name)}/{KEY_NAME}"

    def journals(self) -> None:
        def journal_one(spec: HostSpec, t: Transport) -> HostRun:
            fact = self.facts.get(spec.name)
            run = HostRun(spec.name, t, self.runs_dir(spec.name),
                          new_journal(self.inv.lab, spec.name, self.run_id),
                          systemd=bool(getattr(fact, "systemd", False)))
            self.runs[spec.name] = run  # before saving: a failed save is still rolled back
            run.save()
            return run

        outcomes = self.pool.each(journal_one)
        self.runs = {name: self.runs[name] for name in outcomes if name in self.runs}
        for out in outcomes.values():
            out.unwrap()
        checkpoint("journal")

    def arm(self, run: HostRun, step: str) -> None:
        """Arm the host's dead-man timer right before its first guarded change (journaled as
        planned already, so the rollback knows it). Never shorter than that change may take
        (`deadman.min_after`), so it cannot fire before the change is applied."""
        after = max(self.after, deadman.min_after(self.guard_timeout))
        self.say(f"[{run.name}] arming the dead-man rollback ({after:g}s) before {step}")
        run.journal.deadman = deadman.arm(run.transport, remote_pyz(run.hdir), run.hdir,
                                          self.inv.lab, after, run.systemd)
        run.save()
        checkpoint("deadman")

    def apply(self) -> None:
        assert self.report.plan is not None
        for change in self.report.plan.changes:
            run = self.runs[change.host]
            self.say(f"[{change.host}] {change.description}")
            self.order.append((change.host, len(run.journal.entries)))
            try:
                entry = prepare_change(run, change)
                if change.guarded and run.journal.deadman is None:
                    self.arm(run, change.step)
                self.report.steps.append(
                    execute_change(run, change, entry, self.guard_timeout))
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
            checkpoint(f"change:{change.step}")
        checkpoint("changes")

    def start_daemons(self) -> None:
        from labctl.ops_daemons import daemon_specs

        for spec, dspec, ready in daemon_specs(self.inv, self.facts, self.key_path):
            run = self.runs[spec.name]
            self.say(f"[{spec.name}] starting {dspec.name}")
            rec = dm.record_for(remote_pyz(run.hdir), run.hdir, self.inv.lab, dspec, run.systemd)
            change = Change(spec.name, f"daemon:{dspec.name}", ChangeKind.DAEMON,
                            f"start {dspec.name}", (tuple(rec.argv),),
                            tuple(tuple(a) for a in dm.undo_argvs(rec)))
            entry = run.journal.plan_entry(change, Snapshot(), time.time())
            run.journal.daemons.append(rec)
            run.save()
            self.order.append((spec.name, len(run.journal.entries) - 1))
            dm.start(run.transport, rec)
            run.journal.mark(entry, "applied", time.time())
            run.save()
            self.report.steps.append(run.record(entry, "applied"))
            ready(run.transport, rec)
            checkpoint(f"daemon:{dspec.name}")
        checkpoint("daemons")

    def confirm(self) -> None:
        """Over a NEW connection per host: proves a fresh SSH login still works, then disarms."""
        self.say("confirming over new SSH connections")
        factory = self.opts.fresh_factory or self.opts.factory or _ssh_factory(self.inv)

        def confirm_one(run: HostRun) -> None:
            name, rec = run.name, run.journal.deadman
            if rec is None:  # no guarded change on this host: nothing to confirm
                run.journal.state = "up"
                run.save()
                return
            fresh = factory(self.inv.host(name))
            try:
                connect = getattr(fresh, "connect", None)
                if connect is not None:
                    connect()
                deadman.confirm(fresh, rec)
            except LabctlError as exc:
                # Not a cut of the run's own connection: roll back over it as usual.
                raise RemoteError(f"cannot confirm over a new SSH connection: {exc.message}",
                                  hint=exc.hint, host=name) from exc
            finally:
                fresh.close()
            run.journal.state = "up"
            run.save()

        for out in run_parallel(self.runs, confirm_one).values():
            out.unwrap()
        checkpoint("confirm")

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
        from labctl.verify import MARKS_NAME

        (local_lab_dir(self.inv.lab) / MARKS_NAME).unlink(missing_ok=True)

    def mark_logs(self) -> None:
        """Where every access log ends and the conntrack counts now, so `verify --since-up`
        reads exactly the bytes written after `up` (a failure only costs that precision)."""
        from labctl import verify

        try:
            verify.save_marks(verify.mark_logs(self.inv, self.pool))
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
        for name, idx in reversed(self.order):
            run = self.runs[name]
            if idx >= len(run.journal.entries) or not self.reachable(name):
                continue  # (the change failed before it was journaled)
            entry = run.journal.entries[idx]
            if not entry.may_be_in_place:
                continue
            try:
                if entry.kind == ChangeKind.DAEMON.value:
                    from labctl.ops_down import stop_daemon_entry

                    self.report.steps.append(stop_daemon_entry(run, entry))
                else:
                    self.report.steps.append(undo_entry(run, entry))
            except (LabctlError, OSError) as exc:
                self.report.errors.setdefault(name, f"rollback: {exc}")
        for name, run in self.runs.items():
            if name in self.cut:
                continue
            try:
                if run.journal.deadman is not None:
                    deadman.cancel(run.transport, run.journal.deadman)
                run.journal.state = "rolled_back"
                run.save()
            except (LabctlError, OSError) as exc:
                self.report.errors.setdefault(name, f"rollback: {exc}")


def _ssh_factory(inv: Inventory) -> Factory:
    from labctl.transport.pool import ssh_factory

    return ssh_factory(inv)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _host_errors(exc: BaseException) -> dict[str, str]:
    host = getattr(exc, "host", None) or "*"
    return {host: getattr(exc, "message", None) or str(exc)}


# -- inventory resolution ---------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    inventory: Inventory
    path: str
    text: str


def resolve(path: Optional[str]) -> Resolved:
    """The inventory named, or the one remembered locally when there is exactly one lab."""
    from labctl.inventory import load_inventory, parse_inventory
    from labctl.journal import known_labs, load_record

    if path:
        p = Path(path)
        return Resolved(load_inventory(p), str(p.resolve()), _read(p))
    labs = known_labs()
    records = [r for r in (load_record(name) for name in labs) if r is not None]
    live = [r for r in records if r.state != "down"] or records
    if len(live) != 1:
        known = ", ".join(f"{r.lab} ({r.state})" for r in records) or "none"
        raise UsageError(f"no inventory given and {len(live)} labs are known locally ({known})",
                         hint="pass the inventory file, e.g. `labctl down inventories/local.yaml`")
    rec = live[0]
    return Resolved(parse_inventory(rec.inventory_text, source=rec.inventory_path or rec.lab),
                    rec.inventory_path, rec.inventory_text)


def _read(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read inventory {p}: {exc.strerror or exc}") from exc


def refused_error(report: UpReport, force: bool = False, fix: bool = False) -> PreflightRefused:
    stop = blocking(report.findings, force, _allow_cut(), fix)
    ids = ", ".join(f"{f.id}@{f.host}" for f in stop)
    return PreflightRefused(
        f"preflight found {len(stop)} blocking problem(s): {ids}; nothing was changed",
        hint="fix them (see the hints above); --force skips errors but never the SSH refusals",
    )
