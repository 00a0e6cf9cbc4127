"""Reports: results -> self-contained Markdown, HTML (jinja2, no external assets) and JSON.

    report.drill     a drill's `DrillResult` -> report.md, report.html, result.json
    report.plain     result dataclasses as plain JSON values (the one JSON spelling)

Pure rendering plus writing the files: nothing here runs a command or talks to a host.
May import: the pure result types of the stages it renders (`labctl.drill.model`,
`labctl.drill.runbook`, `labctl.verify.ledger`) and `labctl.errors`. Never the acting modules
(`labctl.drill.run`/`steps`/`faults`/`context`, `labctl.up`, transports) and never `labctl.cli`:
the CLI imports report, not the other way round, and the drill does not import report.
"""
