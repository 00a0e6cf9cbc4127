"""What a drill computes, without touching anything: the plan, the judging and the results.

Pure (no I/O, no clock): `plan_drill` (ordering checks on a validated runbook, before anything
is touched), `check_verify` (a verify step's expectations against a ledger report),
`verify_details`, `cleanup_actions` (what cleanup does, in order), `apply_overrides` (engine
overrides into inventory YAML) and the result dataclasses `DrillResult` / `StepResult` /
`Check` / `CleanupResult`, which `labctl.report` renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

import yaml

from labctl.compare.document import verdict_word
from labctl.compare.types import CompareReport
from labctl.drill.runbook import (
    FAULT_ENDS,
    FAULT_PAIRS,
    CompareStep,
    FaultStep,
    Runbook,
    RunbookError,
    Step,
    TrafficStep,
    VerifyStep,
    WaitStep,
)
from labctl.verify.ledger import LedgerReport
from labctl.verify.logparse import LogRecord

#: Steps that need the copy setup to be up (after an `up`, before a `down`).
NEEDS_UP = ("fault", "verify", "compare")


# ---------------------------------------------------------------- results


@dataclass
class Check:
    """One expectation of a verify step: its name (`verdict`, `min_ratio`, `attribution.session`
    ...), whether it held, and a sentence with what was expected and what came out."""

    name: str
    ok: bool
    detail: str


@dataclass
class StepResult:
    """What one runbook step did.

    `status` is "skipped" until the step ran, then "ok" or "failed" (an error, or an unmet
    check). `started_at` is wall-clock time, `duration` seconds; `details` are the step's own
    figures (plain values: the report shows them as key/value rows); `ledger` is set by verify,
    and `records` with the access-log records it compared (online hosts', target's), which the
    report draws its plots from and never writes out (see `json_fields`).
    """

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
    comparison: Optional[CompareReport] = None
    records: Optional[tuple[list[LogRecord], list[LogRecord]]] = field(default=None,
                                                                        repr=False)

    def json_fields(self) -> dict[str, Any]:
        """The step as it is written to result.json: every field but `records`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "records"}


@dataclass
class CleanupResult:
    """One cleanup action (`revert drop`, `stop background traffic`, `down`, `destroy lab`),
    whether it worked, and what came back (the error when it did not)."""

    action: str
    ok: bool
    detail: str = ""


@dataclass
class DrillResult:
    """The whole drill: what ran (runbook text and source, lab, inventory, engine settings),
    each step's result, each cleanup action's, and how it ended. The verdict is derived."""

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
        """Why the drill did not pass, one sentence each (empty when it passed)."""
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
        """PASSED, FAILED or INTERRUPTED."""
        if self.interrupted:
            return "INTERRUPTED"
        return "PASSED" if self.passed else "FAILED"

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlannedStep:
    """A runbook step with its 1-based index and the title reports show for it."""

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
    start = FAULT_ENDS[step.kind]
    if start not in active:
        raise RunbookError(f"{where}: {step.kind} without an active {start} before it")
    active.discard(start)


def cleanup_actions(active_faults: list[str], background: bool, up: bool, lab_built: bool,
                    keep: bool) -> list[str]:
    """What cleanup does, in order: revert faults newest first (`revert <kind>`), `stop
    background traffic`, `down`, `destroy lab`. `--keep` keeps the copy setup and the lab."""
    out = [f"revert {kind}" for kind in reversed(active_faults)]
    if background:
        out.append("stop background traffic")
    if up and not keep:
        out.append("down")
    if lab_built and not keep:
        out.append("destroy lab")
    return out


# ---------------------------------------------------------------- judging


def check_verify(step: VerifyStep, report: LedgerReport) -> list[Check]:
    """A verify step's expectations against the ledger: the verdict first, then the ratio
    bounds and attribution shares the step names."""
    got = "pass" if report.verdict.passed else "fail"
    why = "" if report.verdict.passed else ": " + "; ".join(report.verdict.reasons)
    if step.expect == "any":    # the step's own bounds (min_ratio, attribution) are the test
        checks = [Check("verdict", True, f"ledger verdict {got.upper()} (not checked: "
                                         f"expect any){why}")]
    else:
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


def window_latency(now: dict[str, int], before: Optional[dict[str, int]]
                   ) -> Optional[dict[str, float]]:
    """p50/p90/p99 (ms) and count of tcpcopy's target-response-time buckets (upper bound in
    ms -> count, cumulative) added since `before`; None when the window has none."""
    diff = {b: n - (before or {}).get(b, 0) for b, n in now.items()}
    rows = sorted((float(b), n) for b, n in diff.items() if n > 0)
    total = sum(n for _b, n in rows)
    if not total:
        return None
    out: dict[str, float] = {"count": float(total)}
    for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        seen = 0
        for bound, n in rows:
            seen += n
            if seen >= p * total:
                out[name] = bound
                break
    return out


def check_latency(step: VerifyStep, window: Optional[dict[str, float]]) -> list[Check]:
    """The step's `target_p50_ms: [low, high]`: the target's median response time as tcpcopy
    saw it over this verify's window (e.g. a netem delay shifts it by the delay)."""
    if step.target_p50_ms is None:
        return []
    low, high = step.target_p50_ms
    if window is None:
        return [Check("target_p50_ms", False, "tcpcopy measured no target response time in "
                                              "this window")]
    p50 = window["p50"]
    return [Check("target_p50_ms", low <= p50 <= high,
                  f"target p50 {p50:g} ms as tcpcopy saw it (bucket bound, 10 % wide) in "
                  f"[{low:g}, {high:g}] ms over {window['count']:.0f} requests")]


def verify_details(r: LedgerReport) -> dict[str, Any]:
    """A verify step's headline figures (the step's `details`)."""
    return {"online requests": r.online_requests, "copies matched": r.target_matched,
            "copy ratio": None if r.copy_ratio is None else round(r.copy_ratio, 4),
            "expected ratio": r.expected_ratio, "missing": r.attribution.missing,
            "ledger verdict": "PASS" if r.verdict.passed else "FAIL"}


def check_compare(step: CompareStep, report: CompareReport) -> list[Check]:
    """A compare step's expectation against the comparison's verdict (INCONCLUSIVE meets
    neither `pass` nor `regression`)."""
    word = verdict_word(report)
    want = "PASS" if step.expect == "pass" else "REGRESSION"
    why = "" if report.verdict.passed else ": " + "; ".join(report.verdict.reasons)
    return [Check("verdict", word == want,
                  f"compare verdict {word} (expected {want}){why}")]


def compare_details(r: CompareReport) -> dict[str, Any]:
    """A compare step's headline figures (the step's `details`)."""
    return {"matched requests": r.matched, "endpoints": len(r.endpoints),
            "judged": sum(1 for e in r.endpoints if e.judged), "noise": r.noise,
            "flags": [f"{f.endpoint}: {f.summary}" for f in r.flags],
            "compare verdict": verdict_word(r)}


def apply_overrides(inventory_text: str, overrides: dict[str, Any]) -> str:
    """Inventory YAML with `engine:` fields replaced (the result is validated later)."""
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
