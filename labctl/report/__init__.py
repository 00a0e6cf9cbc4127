"""Reports: results -> self-contained HTML (plots inline as SVG, no external assets),
Markdown and JSON.

    report.drill     a drill's `DrillResult` -> report.md, report.html, result.json
    report.verify    `labctl verify --report`: a ledger and its records -> report.html,
                     report.md, report.json
    report.compare   `labctl compare --report`: a comparison -> report.html (flags, the
                     endpoint table, latency and error plots), report.md, report.json
    report.series    pure: access-log records and counters -> the numbers behind each plot
    report.plots     series -> matplotlib figures -> inline SVG (matplotlib imported lazily)
    report.figures   which plots a report gets from the data it has, and their JSON
    report.ledger    a ledger as tables of strings (both reports show it)
    report.render    the jinja2 environment (templates/report/), formatters, writing files

JSON goes through `labctl.plain`, the one JSON spelling of every result. Pure rendering plus
writing the files: nothing here runs a command or talks to a host.
May import: the pure result types of the stages it renders (`labctl.drill.model`,
`labctl.drill.runbook`, `labctl.verify.ledger`, `labctl.verify.logparse`, `labctl.compare.types`,
`labctl.compare.stats` and the pure `labctl.compare.document`), `labctl.plain` and
`labctl.errors`. Never the acting modules (`labctl.drill.run`/`steps`/`faults`/`context`,
`labctl.verify.fetch`, `labctl.up`, transports) and never `labctl.cli`: the CLI imports
report, not the other way round, and the drill does not import report.
"""
