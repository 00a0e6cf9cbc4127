"""The core functions the CLI calls: `plan` and `up` (here); `status` and `down` are in
labctl.up.down.

`up`: connect all hosts (parallel) -> facts -> preflight checks (errors block; `--force` skips
non-refusal errors only) -> plan (every change, the daemons included) -> on sudo hosts, the
sudo rights of every program the plan runs there (labctl.up.sudo) -> the apply half in
labctl.up.execute (lock, ship, journal, changes with a dead-man timer before each host's first
guarded one, daemons, confirm over NEW connections, log marks, local state). Any failure after
the lock undoes what was applied, newest first, and reports per host.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from labctl.errors import LabctlError, PreflightRefused, UsageError
from labctl.facts import gather_facts, gather_operator_facts
from labctl.hosts.journal import known_labs, load_record
from labctl.inventory.load import load_inventory, parse_inventory
from labctl.inventory.models import Inventory
from labctl.model import Finding, Plan
from labctl.transport.pool import Factory, HostPool, Watch
from labctl.up import checks, sudo
from labctl.up.checks import run_checks
from labctl.up.execute import UpRun
from labctl.up.findings import short_refs
from labctl.up.hooks import NO_HOOKS, Hooks
from labctl.up.launch import daemon_changes
from labctl.up.options import (
    CONNTRACK_IDS,
    FIXABLE,
    KEY_NAME,
    Progress,
    UpOptions,
    UpReport,
)
from labctl.up.plan import channel_changes, make_plan
from labctl.up.saved_plan import differences

__all__ = [  # UpOptions, UpReport and the constants are re-exported for the CLI and tests
    "CONNTRACK_IDS", "FIXABLE", "KEY_NAME", "Preflight", "Progress", "Resolved", "UpOptions",
    "UpReport", "blocking", "open_pool", "plan", "preflight", "refused_error", "resolve", "up",
]


@dataclass(frozen=True)
class Preflight:
    """What the read-only half found: facts per host, findings, and the plan. `daemon_error`
    says why a daemon could not be built from these facts (the plan then lacks it, a finding
    says why, and `up` stops before any change even with --force)."""

    facts: dict[str, Any]
    findings: list[Finding]
    plan: Plan
    daemon_error: Optional[LabctlError] = None


def _make_plan(inv: Inventory, facts: dict[str, Any], fix: bool,
               findings: list[Finding]) -> tuple[Plan, Optional[LabctlError]]:
    notrack = True if fix and any(f.id in CONNTRACK_IDS for f in findings) else None
    the_plan = make_plan(inv, facts, fix=fix, notrack=notrack)
    try:
        daemons = daemon_changes(inv, facts)
    except LabctlError as exc:
        return the_plan, exc
    iworkers = next((c.daemon.workers for c in daemons
                     if c.daemon is not None and c.daemon.name == "intercept"), 1)
    channel = channel_changes(inv, iworkers)
    return dataclasses.replace(the_plan, changes=the_plan.changes + tuple(channel)
                               + tuple(daemons)), None


def blocking(findings: list[Finding], force: bool, fix: bool = False,
             hooks: Hooks = NO_HOOKS, strict: bool = False) -> list[Finding]:
    """Findings that stop `up`: errors (`--strict`: warnings too); `--force` drops
    non-refusals; `--fix` drops what its changes fix; refusals always block (only a test hook
    lets them through)."""
    out = checks.blocking(findings, force, strict)
    if fix:
        out = [f for f in out if f.refusal or f.id not in FIXABLE]
    if hooks.allow_ssh_cut:
        out = [f for f in out if not f.refusal]
    return out


def preflight(inv: Inventory, opts: UpOptions, pool: HostPool) -> Preflight:
    """Facts, checks and the plan: read-only commands only."""
    opts.progress("gathering facts")
    facts = gather_facts(pool, inv)
    opts.hooks.after("facts")
    opts.progress("running preflight checks")
    operator = opts.operator_facts or gather_operator_facts()
    findings = list(run_checks(inv, facts, operator))
    opts.hooks.after("checks")
    the_plan, daemon_error = _make_plan(inv, facts, opts.fix, findings)
    # sudo hosts: may the login user run every program of this plan through `sudo -n`?
    findings = sudo.sorted_findings([*findings, *sudo.check(inv, the_plan, facts, pool)])
    opts.hooks.after("plan")
    return Preflight(facts, findings, the_plan, daemon_error)


def open_pool(inv: Inventory, factory: Optional[Factory], progress: Progress,
              hooks: Hooks = NO_HOOKS, parallel: Optional[int] = None,
              watch: Optional[Watch] = None) -> HostPool:
    progress(f"connecting to {len(inv.all_hosts())} hosts")
    pool = HostPool.open(inv, factory, parallel, watch)
    hooks.after("connect")
    return pool


def plan(inv: Inventory, opts: Optional[UpOptions] = None) -> UpReport:
    """What `up` would do; touches nothing (read-only commands only)."""
    opts = opts or UpOptions()
    with open_pool(inv, opts.factory, opts.progress, opts.hooks, opts.parallel,
                   opts.watch) as pool:
        pre = preflight(inv, opts, pool)
    refused = bool(blocking(pre.findings, opts.force, opts.fix, opts.hooks, opts.strict))
    return UpReport(inv.lab, pre.findings, pre.plan, dry_run=True, refused=refused)


def up(inv: Inventory, opts: UpOptions) -> UpReport:
    """Preflight, plan, and (unless dry-run or refused) apply and launch. See module doc."""
    report = UpReport(inv.lab, dry_run=opts.dry_run)
    with open_pool(inv, opts.factory, opts.progress, opts.hooks, opts.parallel,
                   opts.watch) as pool:
        pre = preflight(inv, opts, pool)
        report.findings, report.plan = pre.findings, pre.plan
        if blocking(pre.findings, opts.force, opts.fix, opts.hooks, opts.strict):
            report.refused = True
            return report
        if opts.saved_plan is not None:
            report.stale = differences(opts.saved_plan, inv.lab, opts.inventory_text, pre.plan)
            if report.stale:
                report.refused = True
                return report
        if opts.dry_run:
            return report
        if pre.daemon_error is not None:  # what --force let through must fail before changes
            exc = pre.daemon_error
            raise PreflightRefused(f"{exc.message}; nothing was changed", hint=exc.hint,
                                   host=exc.host) from exc
        UpRun(inv, opts, pool, pre.facts, report).run()
    return report


# -- inventory resolution ---------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    inventory: Inventory
    path: str
    text: str


def resolve(path: Optional[str]) -> Resolved:
    """The inventory named, or the one remembered locally when there is exactly one lab."""
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


def refused_error(report: UpReport, force: bool = False, fix: bool = False,
                  hooks: Hooks = NO_HOOKS, strict: bool = False,
                  planning: bool = False) -> PreflightRefused:
    """The refusal `up` raises (`planning`: `plan`'s, saying that `up` would refuse); the
    blocking checks one per id, their hosts compact (`service.unreachable@online[1-16]`)."""
    stop = blocking(report.findings, force, fix, hooks, strict)
    lead = "`up` would be refused: " if planning else ""
    return PreflightRefused(
        f"{lead}preflight found {len(stop)} blocking problem(s): {short_refs(stop)}; "
        "nothing was changed",
        hint="fix them (see the hints above); --force skips errors but never the SSH refusals",
    )
