"""Compare two versions of a service under the same copied traffic (`labctl compare`).

Every copied request reaches a *baseline* target and a *candidate* target (and, when the
inventory has two baselines, a second one). The copies are matched to their online original
the way the loss ledger matches them (`labctl.verify.ledger.match`), grouped by endpoint
(method + path with ids as `{id}`), and the candidate is compared with the baseline per
endpoint: error share, status codes, body sizes, latency percentiles with bootstrap confidence
intervals. A difference is flagged only when it beats the noise measured between two sides
that run the same version (baseline vs second baseline, else online vs baseline) by the
inventory's `compare:` minimums.

Pure (unit-tested, no I/O): `endpoints` (URI -> endpoint), `stats` (percentiles, seeded
bootstrap, two-proportion test), `types` (input, thresholds, report), `match` (rows of one
original and its copies), `judge` (figures, flags, verdict: `build`), `document` (the report
as JSON and Markdown; `write_report` writes both, the hook for an HTML report). Acting
(thin): `fetch` (which target is which, the logs of every side, `run_compare`).

May import: labctl.errors, labctl.plain, labctl.inventory, labctl.transport, labctl.hosts,
labctl.verify (its log records, matching and log fetching). Never labctl.up, labctl.drill,
labctl.report, labctl.lab or labctl.cli; no typer or rich (rendering is
labctl.cli.render.compare).
"""
