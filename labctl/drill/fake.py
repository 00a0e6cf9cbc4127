"""FakeSteps: a `StepExecutor` that touches nothing, records every call, and fails on request.

Unit tests run the real `run_drill` through it (no root, no network, no sleeping):

    fake = FakeSteps(fail={"fault stop-intercept"}, unmet={"verify#2"})
    result = run_drill(Context.for_runbook(rb, "h8zz"), fake, text, "rb.yaml")
    fake.calls == ["prepare", "up", "traffic", "wait", "fault stop-intercept", "teardown",
                   "destroy lab", "close"]

Each call is recorded as a label: `prepare`, `up`, `down`, `traffic`, `wait`, `verify`,
`compare`, `fault <kind>`, `revert <kind>`, `stop traffic`, `teardown`, `destroy lab`,
`close`. `fail`, `unmet` and `interrupt` name labels, or `label#k` for the k-th call with that
label (1-based): `fail` raises LabctlError("boom", hint="look here"), `interrupt` raises
KeyboardInterrupt, `unmet` makes a verify's (or compare's) verdict check fail. The fake keeps
the context contract: `up` sets `ctx.up`, `down`/`teardown` clear it, `prepare` plans
(without building) the runbook's lab so that cleanup destroys it. Background traffic is not
modelled (`ctx.background` stays None).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from labctl.drill.context import Context, Fault, StepExecutor
from labctl.drill.model import Check, DrillResult, StepResult
from labctl.drill.runbook import (
    CompareStep,
    DownStep,
    FaultStep,
    TrafficStep,
    UpStep,
    VerifyStep,
    WaitStep,
)
from labctl.errors import LabctlError
from labctl.lab import plan_lab


@dataclass
class FakeSteps(StepExecutor):
    """Records calls in `calls`; see the module docstring for the failure switches."""

    fail: Collection[str] = ()
    unmet: Collection[str] = ()
    interrupt: Collection[str] = ()
    calls: list[str] = field(default_factory=list)

    def _call(self, label: str) -> set[str]:
        """Record the call; the names it answers to (`label`, `label#k`)."""
        self.calls.append(label)
        names = {label, f"{label}#{self.calls.count(label)}"}
        if names & set(self.interrupt):
            raise KeyboardInterrupt
        if names & set(self.fail):
            raise LabctlError("boom", hint="look here")
        return names

    def prepare(self, ctx: Context, result: DrillResult) -> None:
        self._call("prepare")
        if ctx.runbook.lab is not None:
            ctx.lab = plan_lab(ctx.lab_name, 1)
        result.lab = ctx.lab_name

    def up(self, ctx: Context, step: UpStep, res: StepResult) -> None:
        ctx.up = True
        self._call("up")

    def down(self, ctx: Context, step: DownStep, res: StepResult) -> None:
        self._call("down")
        ctx.up = False

    def traffic(self, ctx: Context, step: TrafficStep, res: StepResult) -> None:
        self._call("traffic")
        res.details = {"sent": step.requests, "ok": step.requests}

    def wait(self, ctx: Context, step: WaitStep, res: StepResult) -> None:
        self._call("wait")

    def verify(self, ctx: Context, step: VerifyStep, res: StepResult) -> None:
        unmet = bool(self._call("verify") & set(self.unmet))
        if step.expect == "any":      # the verdict is not checked: the ratio bound fails
            res.checks = [Check("min_ratio", not unmet, f"copy ratio {0.5 if unmet else 1.0} "
                                                        f"(min {step.min_ratio})")]
            return
        got = {"pass": "fail", "fail": "pass"}[step.expect] if unmet else step.expect
        res.checks = [Check("verdict", not unmet, f"ledger verdict {got.upper()} "
                                                  f"(expected {step.expect})")]

    def compare(self, ctx: Context, step: CompareStep, res: StepResult) -> None:
        unmet = bool(self._call("compare") & set(self.unmet))
        want = "PASS" if step.expect == "pass" else "REGRESSION"
        got = {"PASS": "REGRESSION", "REGRESSION": "PASS"}[want] if unmet else want
        res.checks = [Check("verdict", not unmet, f"compare verdict {got} (expected {want})")]

    def apply_fault(self, ctx: Context, step: FaultStep) -> Fault:
        self._call(f"fault {step.kind}")
        return Fault(step.kind, f"fake {step.kind}", lambda: None)

    def revert_fault(self, ctx: Context, fault: Fault) -> None:
        self._call(f"revert {fault.kind}")
        fault.revert()

    def stop_traffic(self, ctx: Context) -> str:
        self._call("stop traffic")
        ctx.background = None
        return "stopped"

    def teardown(self, ctx: Context) -> str:
        self._call("teardown")
        ctx.up = False
        return "down"

    def destroy_lab(self, ctx: Context) -> str:
        self._call("destroy lab")
        name, ctx.lab = ctx.built_lab.name, None
        return f"lab {name} destroyed"

    def close(self, ctx: Context) -> None:
        self._call("close")
