"""Did the copy work? The loss ledger (`labctl verify`) and the troubleshooting tree
(`labctl diagnose`).

Pure (unit-tested, no I/O): `logparse` (nginx access-log lines -> records), `ledger` (online vs
target records and engine counters -> `LedgerReport`, its data in `types`, per `-x` mapping
figures in `ports`, missing copies' buckets in `attribution`, the inventory's `engine.select`
applied to the online log in `selection`), `baseline` (counters relative to a snapshot),
`targets` (several targets: one ledger per target, the shared engine counters split, the
overall verdict), `tree` (captures and facts -> the first broken link). Acting (thin,
integration-tested): `fetch` (new log bytes from every host, `Watch`), `hoststate` (engine
stats and conntrack counts of a host), `diagnose` (tcpdump on every host, pcaps read with
scapy).

May import: labctl.errors, labctl.model, labctl.inventory, labctl.transport, labctl.facts,
labctl.hosts (journal and daemon state). Never labctl.up (`up` records the log marks through
`fetch.mark_logs`, so verify sits below it), labctl.drill, labctl.report, labctl.lab or
labctl.cli; no typer or rich (rendering is labctl.cli.render.verify). From the engine only
its pure HTTP selection (`engine.http`), which `selection` applies to log records.
"""
