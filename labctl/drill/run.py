"""`run_drill`: a runbook's steps in order through a `StepExecutor`, judged, always cleaned up.

    prepare (build the lab / read the inventory) -> steps in order (a failed step stops the
    rest; a verify whose expectation fails does not) -> cleanup, whatever happened: revert active
    faults newest first, stop background traffic, `down` if still up, destroy a lab the drill
    built (unless --keep) -> the DrillResult (its verdict is derived).

The runner decides *when*; the executor passed in decides *how* (`LiveSteps` for real,
`FakeSteps` in unit tests). The runner keeps `ctx.faults`, the active faults: a fault step
appends what `apply_fault` returns, an ending step (`start-intercept`, `end-drop` ...) reverts the
newest fault of its kind, a `down` step reverts them all first.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional

from labctl.drill.context import Context, StepExecutor
from labctl.drill.model import (
    CleanupResult,
    DrillResult,
    PlannedStep,
    StepResult,
    cleanup_actions,
    plan_drill,
)
from labctl.drill.runbook import (
    FAULT_ENDS,
    CompareStep,
    DownStep,
    FaultStep,
    Step,
    TrafficStep,
    UpStep,
    VerifyStep,
    WaitStep,
)
from labctl.errors import LabctlError, UsageError


@dataclass
class DrillOptions:
    """`keep`: leave the copy setup and the drill's lab in place (faults are still reverted);
    `on_step`: called with each step's result as it finishes (the CLI's live table)."""

    keep: bool = False
    on_step: Callable[[StepResult], None] = field(default=lambda result: None)


def run_drill(ctx: Context, executor: StepExecutor, text: str, source: str,
              opts: Optional[DrillOptions] = None) -> DrillResult:
    """Run the drill of `ctx.runbook` (whose YAML `text` came from `source`); cleanup always
    runs. Ctrl-C marks the result interrupted (the caller re-raises it after writing the
    report). A runbook whose order is impossible is refused (RunbookError) before anything."""
    opts = opts or DrillOptions()
    rb = ctx.runbook
    planned = plan_drill(rb, source)
    result = DrillResult(rb.name, rb.description, source, text, started_at=time.time(),
                         kept=opts.keep, engine=rb.engine.as_update())
    result.steps = [StepResult(p.index, p.kind, p.title) for p in planned]
    try:
        executor.prepare(ctx, result)
        for p, res in zip(planned, result.steps):
            _run_step(ctx, executor, p, res, opts)
            if res.status == "failed" and not res.checks:
                break  # an error, not an unmet expectation: the rest cannot be trusted
    except KeyboardInterrupt:
        result.interrupted = True
    except LabctlError as exc:
        result.error = exc.message
    finally:
        with _shielded():
            result.cleanup = cleanup(ctx, executor, opts.keep)
        result.finished_at = time.time()
    return result


def _run_step(ctx: Context, executor: StepExecutor, p: PlannedStep, res: StepResult,
              opts: DrillOptions) -> None:
    """One step into `res`: ok when it ran and every check held, failed (with the error)
    otherwise. Ctrl-C fails the step and propagates."""
    ctx.say(f"step {p.index}: {p.title}")
    res.started_at = time.time()
    t0 = time.monotonic()
    try:
        execute(ctx, executor, p.step, res)
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


def execute(ctx: Context, executor: StepExecutor, step: Step, res: StepResult) -> None:
    """Hand one step to the executor method of its kind (faults via the active-fault list)."""
    if isinstance(step, UpStep):
        executor.up(ctx, step, res)
    elif isinstance(step, DownStep):
        res.details["reverted"] = revert_faults(ctx, executor)
        executor.down(ctx, step, res)
    elif isinstance(step, TrafficStep):
        executor.traffic(ctx, step, res)
    elif isinstance(step, WaitStep):
        executor.wait(ctx, step, res)
    elif isinstance(step, VerifyStep):
        executor.verify(ctx, step, res)
    elif isinstance(step, CompareStep):
        executor.compare(ctx, step, res)
    else:
        _fault(ctx, executor, step, res)


# ---------------------------------------------------------------- faults


def _fault(ctx: Context, executor: StepExecutor, step: FaultStep, res: StepResult) -> None:
    if step.kind in FAULT_ENDS:
        res.details["ended"] = end_fault(ctx, executor, FAULT_ENDS[step.kind])
        return
    fault = executor.apply_fault(ctx, step)
    ctx.faults.append(fault)
    res.details["fault"] = fault.description


def end_fault(ctx: Context, executor: StepExecutor, kind: str) -> str:
    """Revert the newest active fault of `kind`; its description."""
    for i in range(len(ctx.faults) - 1, -1, -1):
        if ctx.faults[i].kind == kind:
            fault = ctx.faults.pop(i)
            executor.revert_fault(ctx, fault)
            return fault.description
    raise UsageError(f"no active {kind} fault to end")


def revert_faults(ctx: Context, executor: StepExecutor) -> list[str]:
    """Revert every active fault, newest first; the kinds reverted. Raises after trying all
    when any revert failed."""
    done, errors = [], []
    while ctx.faults:
        fault = ctx.faults.pop()
        try:
            executor.revert_fault(ctx, fault)
            done.append(fault.kind)
        except (LabctlError, OSError) as exc:
            errors.append(f"{fault.kind}: {getattr(exc, 'message', exc)}")
    if errors:
        raise LabctlError("reverting faults failed: " + "; ".join(errors))
    return done


# ---------------------------------------------------------------- cleanup


def cleanup(ctx: Context, executor: StepExecutor, keep: bool) -> list[CleanupResult]:
    """Whatever happened: revert faults, stop traffic, down, destroy the drill's lab (in the
    order of `cleanup_actions`); one result per action, each tried even when one failed."""
    actions = cleanup_actions([f.kind for f in ctx.faults], ctx.background is not None,
                              ctx.up, ctx.lab is not None, keep)
    out = []
    try:
        for action in actions:
            ctx.say(f"cleanup: {action}")
            try:
                out.append(CleanupResult(action, True, _cleanup_one(ctx, executor, action)))
            except (LabctlError, OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "message", None) or str(exc)
                out.append(CleanupResult(action, False, detail))
    finally:
        executor.close(ctx)
    return out


def _cleanup_one(ctx: Context, executor: StepExecutor, action: str) -> str:
    if action.startswith("revert "):
        fault = ctx.faults.pop()
        executor.revert_fault(ctx, fault)
        return fault.description
    if action == "stop background traffic":
        return executor.stop_traffic(ctx)
    if action == "down":
        return executor.teardown(ctx)
    if action == "destroy lab":
        return executor.destroy_lab(ctx)
    raise AssertionError(action)


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
