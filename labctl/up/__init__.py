"""`labctl plan`, `up`, `status` and `down`: from facts to changes on the hosts, and back.

    checks       pure: (inventory, facts, operator facts) -> findings (refusals protect SSH)
    findings     pure: findings grouped per check and subject (hosts listed, `online[1-16]`)
    sudo         sudo hosts: the programs a plan runs there, `sudo -n -l` each, the findings
    egress       pure: which of online's OUTPUT rules would refuse the copies (for checks)
    plan         pure: (inventory, facts) -> ordered, tagged, idempotent route/rule/sysctl Changes
    launch       pure: the daemon Changes (launch argv, stop argv, files, readiness probe)
    engine_args  pure: inventory -> tcpcopy/intercept flags; datalink: next hops from facts
    runtime      pure: each daemon's interpreter (engine.runtime) and workers (engine.workers)
    saved_plan   `plan --out` / `up --plan`: structured plan files, staleness by field
    options      UpOptions / UpReport (what an `up` is asked, what it did); hooks: test seams
    run          plan() and up(): connect -> facts -> checks -> plan -> execute
    execute      UpRun: lock -> ship -> journals -> changes (dead-man before the first guarded
                 one) -> daemons -> confirm over new connections -> log marks -> local state
    apply        one change: journal first, probe, apply, undo (chained where it can)
    lock         the per-host lock (with the state dir and a read, one round trip)
    deadman      the rollback timer armed on the host; ship: the engine zipapp
    down         status() and down(): read and undo what the journal lists

May import: labctl.errors, labctl.model, labctl.plain, labctl.inventory, labctl.transport,
labctl.facts, labctl.hosts, labctl.verify (the log marks taken at the end of `up`). Never
labctl.drill, labctl.report, labctl.lab, labctl.demo or labctl.cli. From the engine: `ship`
packs it, `engine_args` reads `engine.http.select` (the default safe methods).
"""
