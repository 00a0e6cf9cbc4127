"""`labctl drill`: run a runbook's steps, collect per-step results, judge, always clean up.

Pure here: `plan_drill` (ordering checks on a validated runbook, before anything is touched),
`check_verify` (a verify step's expectations against a ledger report), `cleanup_actions`,
`apply_overrides` and the result dataclasses. The acting part (each step's I/O, faults and their
reverts) is `labctl.drill.steps`; `run_drill` ties them together:

    prepare (build the lab / read the inventory) -> steps in order (a failed step stops the
    rest; a verify whose expectation fails does not) -> cleanup, whatever happened: revert active
    faults newest first, stop background traffic, `down` if still up, destroy a lab the drill
    built (unless --keep) -> verdict.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import yaml

from labctl.drill.runbook import (
    FAULT_PAIRS,
    FaultStep,
    Runbook,
    RunbookError,
    Step,
    TrafficStep,
    VerifyStep,
    WaitStep,
)
from labctl.errors import LabctlError
from labctl.verify.ledger import LedgerReport

Progress = Callable[[str], None]
#: Steps that need the copy setup to be up (after an `up`, before a `down`).
NEEDS_UP = ("fault", "verify")
ENDS = {end: start for start, end in FAULT_PAIRS.items()}


# ---------------------------------------------------------------- results


@dataclass
class Check:
    """One expectation of a verify step: what was expected, what came out."""

    name: str
    ok: bool
    detail: str


@dataclass
class StepResult:
    index: int  # 1-based, as in the runbook
    kind: str
    title: str
    status: str = "skipped"  # ok | failed | skipped
    started_at: float = 0.0
    duration: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    error: str = ""
    ledger: Optional[LedgerReport] = None


@dataclass
class CleanupResult:
    action: str
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    name: str
    description: str
    source: str
    runbook_text: str
    lab: str = ""
    topology: str = ""
    inventory: str = ""
    engine: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    cleanup: list[CleanupResult] = field(default_factory=list)
    interrupted: bool = False
    kept: bool = False
    error: str = ""
    report_dir: str = ""

    @property
    def reasons(self) -> list[str]:
        out = [f"step {s.index} ({s.title}): " + (s.error or "; ".join(
            c.detail for c in s.checks if not c.ok)) for s in self.steps if s.status == "failed"]
        out += [f"cleanup {c.action}: {c.detail}" for c in self.cleanup if not c.ok]
        if self.error:
            out.insert(0, self.error)
        if self.interrupted:
            out.insert(0, "interrupted (Ctrl-C); cleanup ran")
        return out

    @property
    def passed(self) -> bool:
        return not self.reasons and all(s.status == "ok" for s in self.steps)

    @property
    def verdict(self) -> str:
        if self.interrupted:
            return "INTERRUPTED"
        return "PASSED" if self.passed else "FAILED"

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)


# ---------------------------------------------------------------- pure planning


@dataclass(frozen=True)
class PlannedStep:
    index: int
    kind: str
    title: str
    step: Step


def plan_drill(rb: Runbook, source: str = "runbook") -> list[PlannedStep]:
    """The steps in order, after checking what order alone can tell (nothing is touched).

    Refused (RunbookError): faults/verify outside up..down, ending a fault that is not active,
    waiting for traffic that was never started in the background."""
    up, background = False, False
    active: set[str] = set()
    out = []
    for i, step in enumerate(rb.steps, start=1):
        where = f"{source}: step {i} ({step.title()})"
        if step.step in NEEDS_UP and not up:
            raise RunbookError(f"{where}: needs the copy setup up; add `- up` before it")
        if step.step == "up":
            if up:
                raise RunbookError(f"{where}: already up (add `- down` first)")
            up = True
        elif step.step == "down":
            up, active = False, set()
        elif isinstance(step, FaultStep):
            _plan_fault(step, active, where)
        elif isinstance(step, TrafficStep) and step.background:
            background = True
        elif isinstance(step, WaitStep) and step.until == "traffic-done" and not background:
            raise RunbookError(f"{where}: no background traffic to wait for",
                               hint="start it with `- traffic: {..., background: true}`")
        out.append(PlannedStep(i, step.step, step.title(), step))
    return out


def _plan_fault(step: FaultStep, active: set[str], where: str) -> None:
    if step.kind in FAULT_PAIRS:
        if step.kind in active:
            raise RunbookError(f"{where}: {step.kind} is already active")
        active.add(step.kind)
        return
    start = ENDS[step.kind]
    if start not in active:
        raise RunbookError(f"{where}: {step.kind} without an active {start} before it")
    active.discard(start)


def cleanup_actions(active_faults: list[str], background: bool, up: bool, lab_built: bool,
                    keep: bool) -> list[str]:
    """What cleanup does, in order (pure): revert faults newest first, stop background
    traffic, `down`, destroy the drill's lab. `--keep` keeps the copy setup and the lab."""
    out = [f"revert {kind}" for kind in reversed(active_faults)]
    if background:
        out.append("stop background traffic")
    if up and not keep:
        out.append("down")
    if lab_built and not keep:
        out.append("destroy lab")
    return out


def check_verify(step: VerifyStep, report: LedgerReport) -> list[Check]:
    """A verify step's expectations against the ledger (pure)."""
    got = "pass" if report.verdict.passed else "fail"
    why = "" if report.verdict.passed else ": " + "; ".join(report.verdict.reasons)
    checks = [Check("verdict", got == step.expect,
                    f"ledger verdict {got.upper()} (expected {step.expect}){why}")]
    ratio = report.copy_ratio
    shown = "-" if ratio is None else f"{ratio:.4f}"
    if step.min_ratio is not None:
        checks.append(Check("min_ratio", ratio is not None and ratio >= step.min_ratio,
                            f"copy ratio {shown} >= {step.min_ratio:g}"))
    if step.max_ratio is not None:
        checks.append(Check("max_ratio", ratio is not None and ratio <= step.max_ratio,
                            f"copy ratio {shown} <= {step.max_ratio:g}"))
    for bucket, least in step.attribution.items():
        checks.append(_attribution_check(report, bucket, least))
    return checks


def _attribution_check(report: LedgerReport, bucket: str, least: float) -> Check:
    att = report.attribution
    name = f"attribution.{bucket}"
    if att.missing <= 0:
        return Check(name, False, f"no missing copies to attribute (expected {bucket} to "
                                  f"explain >= {least:.0%})")
    n = att.unexplained if bucket == "unexplained" else sum(
        b.requests for b in att.buckets if b.name == bucket)
    share = n / att.missing
    return Check(name, share >= least, f"{bucket} explains {n}/{att.missing} missing copies "
                                      f"({share:.0%}; expected >= {least:.0%})")


def apply_overrides(inventory_text: str, overrides: dict[str, Any]) -> str:
    """Inventory YAML with `engine:` fields replaced (pure; the result is validated later)."""
    if not overrides:
        return inventory_text
    data = yaml.safe_load(inventory_text)
    if not isinstance(data, dict):
        return inventory_text  # the inventory loader reports what is wrong with it
    engine = dict(data.get("engine") or {})
    engine.update(overrides)
    data["engine"] = engine
    header = "# engine overrides from the drill runbook: " + ", ".join(
        f"{k}={v}" for k, v in overrides.items()) + "\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


# ---------------------------------------------------------------- running


@dataclass
class DrillOptions:
    keep: bool = False
    lab_name: str = ""  # overrides the runbook's lab name
    progress: Progress = field(default=lambda msg: None)
    #: Called with each step's result as it finishes (the CLI's live table).
    on_step: Callable[[StepResult], None] = field(default=lambda result: None)


def run_drill(rb: Runbook, text: str, source: str, opts: DrillOptions) -> DrillResult:
    """Run the drill; cleanup always runs. Ctrl-C marks the result interrupted (then re-raised
    by the caller after the report is written: see `DrillResult.interrupted`)."""
    from labctl.drill import steps as ds

    planned = plan_drill(rb, source)
    result = DrillResult(rb.name, rb.description, source, text, started_at=time.time(),
                         kept=opts.keep, engine=rb.engine.as_update())
    result.steps = [StepResult(p.index, p.kind, p.title) for p in planned]
    ctx = ds.Context(rb, opts.lab_name or (rb.lab.name if rb.lab else ""), opts.progress)
    try:
        ds.prepare(ctx, result)
        for p, res in zip(planned, result.steps):
            _run_step(ctx, p, res, opts)
            if res.status == "failed" and not res.checks:
                break  # an error, not an unmet expectation: the rest cannot be trusted
    except KeyboardInterrupt:
        result.interrupted = True
    except LabctlError as exc:
        result.error = exc.message
    finally:
        with _shielded():
            result.cleanup = ds.cleanup(ctx, opts.keep)
        result.finished_at = time.time()
    return result


def _run_step(ctx: Any, p: PlannedStep, res: StepResult, opts: DrillOptions) -> None:
    from labctl.drill import steps as ds

    opts.progress(f"step {p.index}: {p.title}")
    res.started_at = time.time()
    t0 = time.monotonic()
    try:
        ds.execute(ctx, p.step, res)
        if res.status == "skipped":
            res.status = "ok" if all(c.ok for c in res.checks) else "failed"
    except LabctlError as exc:
        res.status, res.error = "failed", exc.message + (f" (hint: {exc.hint})" if exc.hint
                                                          else "")
    except OSError as exc:
        res.status, res.error = "failed", f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        res.status, res.error = "failed", "interrupted"
        raise
    finally:
        res.duration = time.monotonic() - t0
        opts.on_step(res)


@contextmanager
def _shielded() -> Iterator[None]:
    """Cleanup is not cut short by another Ctrl-C (the signal is noted and ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
