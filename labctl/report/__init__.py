"""Reports: results -> self-contained Markdown, HTML (jinja2, no external assets) and JSON.

    report.drill     a drill's `DrillResult` -> report.md, report.html, result.json
                     (JSON through `labctl.plain`, the one JSON spelling of every result)

Pure rendering plus writing the files: nothing here runs a command or talks to a host.
May import: the pure result types of the stages it renders (`labctl.drill.model`,
`labctl.drill.runbook`, `labctl.verify.ledger`), `labctl.plain` and `labctl.errors`. Never the
acting modules (`labctl.drill.run`/`steps`/`faults`/`context`, `labctl.up`, transports) and
never `labctl.cli`: the CLI imports report, not the other way round, and the drill does not
import report.
"""
