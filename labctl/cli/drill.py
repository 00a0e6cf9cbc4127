"""`labctl drill RUNBOOK`: run a drill, write its report, exit 4 when an expectation failed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from labctl.cli.app import app
from labctl.cli.console import err, out
from labctl.drill.context import Context
from labctl.drill.model import DrillResult, StepResult
from labctl.drill.run import DrillOptions, run_drill
from labctl.drill.runbook import LAB_NAME, parse_runbook, read_text
from labctl.drill.steps import LiveSteps
from labctl.errors import DrillFailed, UsageError
from labctl.report import drill as report

STYLE = {"ok": "green", "failed": "bold red", "skipped": "dim"}


@app.command("drill")
def drill_cmd(
    runbook: Path = typer.Argument(..., help="Runbook YAML (see runbooks/)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    report_dir: Optional[Path] = typer.Option(
        None, "--report-dir", help="Where to write the report (default "
        "./labctl-reports/<name>-<timestamp>/)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the copy setup and the drill's lab "
                              "afterwards (faults are still reverted)."),
    lab_name: str = typer.Option("", "--lab-name", help="Build the local lab under this name "
                                 "instead of the runbook's."),
) -> None:
    """Run a drill runbook step by step, then write a Markdown/HTML/JSON report."""
    if lab_name and not re.match(LAB_NAME, lab_name):
        raise UsageError(f"--lab-name {lab_name!r}: a lowercase letter, then up to 7 lowercase "
                         "letters or digits")
    text = read_text(runbook)
    rb = parse_runbook(text, source=str(runbook))
    with err().status(f"drill {rb.name}", spinner="dots") as spinner:
        def say(msg: str) -> None:
            err().print(f"[dim]·[/dim] {escape(msg)}", highlight=False)
            spinner.update(escape(msg))

        ctx = Context.for_runbook(rb, lab_name, say)
        result = run_drill(ctx, LiveSteps(), text, str(runbook),
                           DrillOptions(keep=keep, on_step=_show_step))
    where = report_dir or report.default_dir(rb.name, result.started_at)
    paths = report.write_report(result, where)
    if json_out:
        typer.echo(report.to_json(result))
    else:
        out().print(_summary(result, paths))
    if result.interrupted:
        raise KeyboardInterrupt
    if not result.passed:
        raise DrillFailed(f"drill {rb.name} FAILED: " + "; ".join(result.reasons),
                          hint=f"see {paths[0]}")


def _show_step(res: StepResult) -> None:
    style = STYLE.get(res.status, "")
    err().print(f"[{style}]{res.status:>6}[/{style}] step {res.index}: {escape(res.title)} "
              f"({res.duration:.1f} s)" + (f" [red]{escape(res.error)}[/red]"
                                            if res.error else ""), highlight=False)


def _summary(result: DrillResult, paths: list[Path]) -> Table:
    t = Table(title=f"drill {result.name}: {result.verdict}", title_justify="left")
    for col in ("#", "step", "outcome", "duration", "notes"):
        t.add_column(col)
    for s in result.steps:
        style = STYLE.get(s.status, "")
        notes = s.error or "; ".join(c.detail for c in s.checks if not c.ok)
        t.add_row(str(s.index), escape(s.title), f"[{style}]{s.status}[/{style}]",
                  f"{s.duration:.1f} s", escape(notes))
    for c in result.cleanup:
        t.add_row("", f"cleanup: {escape(c.action)}", "[green]ok[/green]" if c.ok else
                  "[bold red]failed[/bold red]", "", escape(c.detail if not c.ok else ""))
    t.caption = "report: " + ", ".join(str(p) for p in paths)
    return t
