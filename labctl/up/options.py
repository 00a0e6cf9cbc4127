"""What one `up` is asked to do (`UpOptions`) and what it did (`UpReport`): plain values shared
by the preflight half (labctl.up.run) and the apply half (labctl.up.execute)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from labctl.facts import OperatorFacts
from labctl.hosts.daemons import DaemonStatus
from labctl.model import Finding, Plan
from labctl.transport.pool import Factory, Watch
from labctl.up import deadman
from labctl.up.apply import StepOutcome
from labctl.up.hooks import NO_HOOKS, Hooks
from labctl.up.saved_plan import SavedPlan
from labctl.up.ship import ShipOutcome

Progress = Callable[[str], None]

#: Seconds a command of a guarded change (route, DROP rule) may take before labctl concludes
#: that the change cut its SSH path.
DEFAULT_GUARD_TIMEOUT = 10.0
#: The intercept channel key's file name in each host's state directory.
KEY_NAME = "channel.key"
#: Findings `--fix` resolves with planned changes (see labctl.up.plan.fix_changes_for).
FIXABLE = frozenset({"assistant.ip_forward", "target.rp_filter", "conntrack.usage",
                     "conntrack.headroom"})
CONNTRACK_IDS = frozenset({"conntrack.usage", "conntrack.headroom"})


def _quiet(msg: str) -> None:
    """The default progress sink: says nothing."""


@dataclass
class UpOptions:
    dry_run: bool = False
    force: bool = False
    fix: bool = False
    #: --strict: warnings block like errors (e.g. nothing listens on a copied target port)
    strict: bool = False
    deadman_seconds: float = deadman.DEFAULT_AFTER
    guard_timeout: float = DEFAULT_GUARD_TIMEOUT
    #: Seconds each daemon may take to become ready (see `Readiness`).
    ready_timeout: float = 30.0
    inventory_path: str = ""
    inventory_text: str = ""
    progress: Progress = _quiet
    #: Transports for the run (tests: fakes) and for the confirming NEW connections.
    factory: Optional[Factory] = None
    fresh_factory: Optional[Factory] = None
    #: `up --plan FILE`: apply only if the plan made now is still this one.
    saved_plan: Optional[SavedPlan] = None
    #: This machine's own addresses (None: read them; tests pass recorded ones).
    operator_facts: Optional[OperatorFacts] = None
    #: Fault-injection seams (tests only; see labctl.up.hooks).
    hooks: Hooks = NO_HOOKS
    #: `--parallel N`: hosts worked on at once (None: labctl.transport.pool.MAX_WORKERS).
    parallel: Optional[int] = None
    #: Hears each host start and end each phase (the CLI's live per-host table).
    watch: Optional[Watch] = None


@dataclass
class UpReport:
    lab: str
    findings: list[Finding] = field(default_factory=list)
    plan: Optional[Plan] = None
    dry_run: bool = False
    refused: bool = False
    shipped: list[ShipOutcome] = field(default_factory=list)
    steps: list[StepOutcome] = field(default_factory=list)
    daemons: dict[str, list[DaemonStatus]] = field(default_factory=dict)
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
