"""Drills: a runbook of steps (up, traffic, waits, faults, verify, compare, down) run against
the lab or an inventory, judged by the loss ledger (and `compare`'s verdict), always cleaned up.

    runbook   YAML text -> a validated, frozen `Runbook` (errors name file:line and field)
    model     pure: the plan (ordering checks), judging a verify, cleanup order, the results
    context   the typed `Context` a step or fault receives, and the `StepExecutor` interface
    faults    each fault and its exact revert: `(Context, FaultStep) -> Fault`
    steps     `LiveSteps`: what each step does for real
    run       `run_drill(ctx, executor, ...)`: steps in order, faults bookkept, cleanup always
    fake      `FakeSteps`: an executor for unit tests that records calls and touches nothing

Imports point one way inside the package: runbook <- model <- context <- faults <- steps, and
run imports only runbook/model/context (the executor is passed in); nothing imports run.
May import: `labctl.errors`, `labctl.model`, `labctl.inventory`, `labctl.transport`,
`labctl.hosts`, `labctl.up`, `labctl.verify`, `labctl.compare`, `labctl.lab`. Never
`labctl.report` (report renders `drill.model` results) nor `labctl.cli` (the `labctl drill`
command wires `run_drill`, `LiveSteps` and the report).
"""
