"""The typed context every drill step and fault receives, and the executor interface.

`Context` is the drill's state while it runs: the runbook, the inventory it resolved to (and the
lab, when the drill built one), the connections to the hosts, whether the copy setup is up, the
log marks the next verify starts from, background traffic and the active faults.

`StepExecutor` is what each step kind and each fault does to the world; `run_drill`
(`labctl.drill.run`) decides when, keeps the list of active faults and always cleans up. The
real executor is `labctl.drill.steps.LiveSteps`; `labctl.drill.fake.FakeSteps` records calls.
Contract on the context: `prepare` sets `inv` (and `lab` when it builds one), `up` sets `up`
(true from the moment hosts may have changed), `down`/`teardown` clear it, a background
`traffic` sets `background` and whoever joins or stops it clears it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import IO, Callable, Optional, Protocol

from labctl.drill.model import DrillResult, StepResult
from labctl.drill.runbook import (
    CompareStep,
    DownStep,
    FaultStep,
    Runbook,
    TrafficStep,
    UpStep,
    VerifyStep,
    WaitStep,
)
from labctl.errors import RemoteError
from labctl.hosts import daemons as dm
from labctl.hosts.journal import DaemonRecord
from labctl.inventory.models import HostSpec, Inventory
from labctl.lab import LabInfo
from labctl.transport.pool import HostPool
from labctl.up.down import read_journal
from labctl.verify.fetch import Marks

Progress = Callable[[str], None]


@dataclass
class Fault:
    """An active fault: its kind (`drop` ...), what was done (for the report), and the exact
    revert (a closure over what the injection found and changed)."""

    kind: str
    description: str
    revert: Callable[[], None]


@dataclass
class Background:
    """Traffic generator still running: the process, the temporary file its JSON summary goes
    to, when it started and the traffic step whose details its summary completes."""

    proc: subprocess.Popen[str]
    out: IO[str]
    started_at: float
    step: StepResult


@dataclass
class Context:
    """The drill's state while it runs (see the module docstring). Creating one does no I/O:
    the host connections open on first use."""

    runbook: Runbook
    lab_name: str
    say: Progress
    inv: Optional[Inventory] = None
    inv_path: str = ""
    inv_text: str = ""
    lab: Optional[LabInfo] = None  # when the drill built the local lab
    pool: Optional[HostPool] = None
    up: bool = False
    marks: Optional[Marks] = None
    #: tcpcopy's target-response-time buckets at the previous verify (summed over online hosts)
    latency_marks: Optional[dict[str, int]] = None
    background: Optional[Background] = None
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def for_runbook(cls, rb: Runbook, lab_name: str = "",
                    say: Progress = lambda msg: None) -> Context:
        """The context for a drill of `rb`; `lab_name` overrides the runbook's lab name."""
        return cls(rb, lab_name or (rb.lab.name if rb.lab else ""), say)

    @property
    def inventory(self) -> Inventory:
        assert self.inv is not None, "prepare() sets the inventory"
        return self.inv

    @property
    def built_lab(self) -> LabInfo:
        """The lab this drill built (faults that act inside its namespaces need it)."""
        assert self.lab is not None, "only drills on the local lab have one"
        return self.lab

    def hosts(self) -> HostPool:
        if self.pool is None:
            self.pool = HostPool.open(self.inventory)
        return self.pool

    def run(self, spec: HostSpec, argv: list[str], check: bool = True) -> str:
        """Run `argv` on the host (with its sudo setting); its stdout. Raises on failure
        unless `check` is false."""
        res = self.hosts().transport(spec.name).run(argv)
        if check:
            res.check()
        return res.stdout

    def close_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


class StepExecutor(Protocol):
    """What each step kind and each fault does (the acting half of a drill).

    Step methods fill `res.details` (and `res.checks`/`res.ledger` for verify) and raise
    LabctlError or OSError when the step could not be done; an unmet expectation is a failed
    check, not an exception. Cleanup methods return a one-line summary of what they did.
    """

    def prepare(self, ctx: Context, result: DrillResult) -> None:
        """Build the lab or read the inventory; fill `result.lab/topology/inventory/engine`."""

    def up(self, ctx: Context, step: UpStep, res: StepResult) -> None: ...

    def down(self, ctx: Context, step: DownStep, res: StepResult) -> None:
        """`down` as a step (the runner has reverted the active faults first)."""

    def traffic(self, ctx: Context, step: TrafficStep, res: StepResult) -> None: ...

    def wait(self, ctx: Context, step: WaitStep, res: StepResult) -> None: ...

    def verify(self, ctx: Context, step: VerifyStep, res: StepResult) -> None: ...

    def compare(self, ctx: Context, step: CompareStep, res: StepResult) -> None:
        """`labctl compare` over the traffic since the last mark (the mark stays)."""

    def apply_fault(self, ctx: Context, step: FaultStep) -> Fault:
        """Inject a fault (`step.kind` is one of FAULT_PAIRS); the Fault knows its revert."""

    def revert_fault(self, ctx: Context, fault: Fault) -> None: ...

    def stop_traffic(self, ctx: Context) -> str:
        """Cleanup: stop the background traffic generator."""

    def teardown(self, ctx: Context) -> str:
        """Cleanup: `down` on every host."""

    def destroy_lab(self, ctx: Context) -> str:
        """Cleanup: destroy the lab the drill built."""

    def close(self, ctx: Context) -> None:
        """Release host connections (the last thing a drill does)."""


# ---------------------------------------------------------------- shared by steps and faults


def daemon_record(ctx: Context, spec: HostSpec, name: str) -> DaemonRecord:
    """The journaled record of the daemon (`tcpcopy`, `intercept`) `up` started on this host."""
    journal = read_journal(ctx.hosts().transport(spec.name), ctx.inventory, spec.name)
    for rec in (journal.daemons if journal else []):
        if rec.name == name and not rec.stopped_at:
            return rec
    raise RemoteError(f"no running {name} recorded in the journal", host=spec.name,
                      hint="is the copy setup up? (`labctl status`)")


def wait_tcpcopy_connected(ctx: Context, timeout: float) -> None:
    """Until every online host's tcpcopy is connected to intercept (raises after `timeout`)."""
    for spec in ctx.inventory.hosts.online:
        rec = daemon_record(ctx, spec, "tcpcopy")
        dm.wait_connected(ctx.hosts().transport(spec.name), rec, timeout=timeout)
