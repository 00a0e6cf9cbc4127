"""Drill runbooks: YAML text -> a validated, frozen `Runbook` (pydantic), errors naming file:line.

A runbook names the inventory (a file, or a local lab the drill builds and destroys), optional
engine overrides, and ordered steps. Each step is a bare word (`- up`, `- down`) or a one-key
mapping (`- traffic: {requests: 1000}`; `- wait: 2`; `- fault: stop-intercept`;
`- fault: {kind: netem, delay_ms: 50}`). Line tracking and duplicate-key detection reuse the
inventory loader's YAML composer (`labctl.inventory.yamlsource`).

    steps   the model: step kinds and their parameters, fault kinds and their endings, `Runbook`
    parse   YAML -> `Runbook`; `load_runbook(path)`, `parse_runbook(text, source)`

Public API (re-exported here):
    load_runbook(path) -> Runbook
    parse_runbook(text, source="<string>") -> Runbook
    RunbookError (a UsageError: exit 2)
"""

from labctl.drill.runbook.parse import load_runbook, parse_runbook, read_text
from labctl.drill.runbook.steps import (
    BUCKETS,
    FAULT_ENDS,
    FAULT_KINDS,
    FAULT_PAIRS,
    LAB_NAME,
    LAB_ONLY_FAULTS,
    NETEM_FIELDS,
    RUNBOOK_NAME,
    STEP_KINDS,
    WAIT_CONDITIONS,
    CompareStep,
    DownStep,
    EngineOverrides,
    FaultStep,
    InventoryRef,
    LabRef,
    Runbook,
    RunbookError,
    Step,
    TrafficStep,
    UpStep,
    VerifyStep,
    WaitStep,
)

__all__ = [
    "BUCKETS", "FAULT_ENDS", "FAULT_KINDS", "FAULT_PAIRS", "LAB_NAME", "LAB_ONLY_FAULTS",
    "NETEM_FIELDS", "RUNBOOK_NAME", "STEP_KINDS", "WAIT_CONDITIONS", "CompareStep", "DownStep",
    "EngineOverrides", "FaultStep", "InventoryRef", "LabRef", "Runbook", "RunbookError", "Step",
    "TrafficStep", "UpStep", "VerifyStep", "WaitStep", "load_runbook", "parse_runbook",
    "read_text",
]
