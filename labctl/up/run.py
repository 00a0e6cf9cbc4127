"""The core functions the CLI calls: `plan`, `up` (here), `status` and `down` (labctl.up.down).

`up`: connect all hosts (parallel) -> facts -> preflight checks (errors block; `--force` skips
non-refusal errors only) -> plan -> the apply half in
labctl.up.execute (lock, ship, journal, changes
with a dead-man timer before each host's first guarded one, daemons, confirm over NEW
connections, log marks, local state). Any failure after the lock undoes what was applied, newest
first, and reports per host.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from labctl.errors import PreflightRefused, UsageError
from labctl.inventory.models import Inventory
from labctl.model import Finding, Plan
from labctl.transport.pool import Factory, HostPool
from labctl.up import daemons as dm
from labctl.up import deadman
from labctl.up.apply import StepOutcome, checkpoint
from labctl.up.execute import DEADMAN_ENV, DEFAULT_GUARD_TIMEOUT, GUARD_ENV, KEY_NAME, _Up
from labctl.up.saved_plan import SavedPlan, differences
from labctl.up.ship import ShipOutcome

__all__ = [  # the constants re-exported from labctl.up.execute are part of this module's API
    "ALLOW_SSH_CUT_ENV", "CONNTRACK_IDS", "DEADMAN_ENV", "FIXABLE", "GUARD_ENV", "KEY_NAME",
    "Progress", "Resolved", "UpOptions", "UpReport", "blocking", "open_pool", "plan",
    "preflight", "refused_error", "resolve", "up",
]

#: Test-only: lets `up` proceed past the refusals that protect SSH (to prove the dead-man works).
ALLOW_SSH_CUT_ENV = "LABCTL_TEST_ALLOW_SSH_CUT"

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
    #: `up --plan FILE`: apply only if the plan made now is still this one.
    saved_plan: Optional[SavedPlan] = None


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
    #: `up --plan FILE`: why the saved plan no longer holds (then nothing was changed).
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.errors

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)


# -- preflight / plan (read-only) -----------------------------------------------------------
#: Findings `--fix` resolves with planned changes (see labctl.up.plan.fix_changes_for).
FIXABLE = frozenset({"assistant.ip_forward", "target.rp_filter", "conntrack.usage",
                     "conntrack.headroom"})
CONNTRACK_IDS = frozenset({"conntrack.usage", "conntrack.headroom"})


def _checks(inv: Inventory, facts: dict[str, Any]) -> list[Finding]:
    from labctl.facts import gather_operator_facts
    from labctl.up.checks import run_checks

    return list(run_checks(inv, facts, gather_operator_facts()))


def _make_plan(inv: Inventory, facts: dict[str, Any], fix: bool,
               findings: list[Finding]) -> Plan:
    from labctl.up.plan import make_plan

    notrack = True if fix and any(f.id in CONNTRACK_IDS for f in findings) else None
    plan = make_plan(inv, facts, fix=fix, notrack=notrack)
    return dataclasses.replace(plan, daemons=tuple(_daemon_lines(inv, facts)))


def _daemon_lines(inv: Inventory, facts: dict[str, Any]) -> list[str]:
    """The daemons `up` will start, with their engine flags ([] if they cannot be built from
    these facts: a finding says why, and `up` stops before any change)."""
    import shlex

    from labctl.errors import LabctlError
    from labctl.up.daemon_specs import daemon_specs
    from labctl.up.journal import host_dir

    try:
        specs = daemon_specs(inv, facts,
                             lambda h: f"{host_dir(inv.state_dir, inv.lab, h)}/{KEY_NAME}")
    except LabctlError:
        return []
    return [f"[{host.name}] {d.name} {shlex.join(d.args)}" for host, d, _ready in specs]


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


def _check_daemon_args(inv: Inventory, facts: dict[str, Any]) -> None:
    """Build every daemon's arguments from the facts before anything is changed: what `--force`
    let through (e.g. datalink.mac_unknown) must fail here, not after the route is in place."""
    from labctl.errors import LabctlError
    from labctl.up.daemon_specs import daemon_specs

    try:
        daemon_specs(inv, facts, lambda host: f"<{host} key>")
    except LabctlError as exc:
        raise PreflightRefused(f"{exc.message}; nothing was changed", hint=exc.hint,
                               host=exc.host) from exc


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
        if opts.saved_plan is not None:
            report.stale = differences(opts.saved_plan, inv.lab, opts.inventory_text,
                                       report.plan)
            if report.stale:
                report.refused = True
                return report
        if opts.dry_run:
            return report
        _check_daemon_args(inv, facts)
        _Up(inv, opts, pool, facts, report).run()
    return report


# -- inventory resolution ---------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    inventory: Inventory
    path: str
    text: str


def resolve(path: Optional[str]) -> Resolved:
    """The inventory named, or the one remembered locally when there is exactly one lab."""
    from labctl.inventory.load import load_inventory, parse_inventory
    from labctl.up.journal import known_labs, load_record

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
