"""CLI command: `labctl compare` (baseline vs candidate target under the same copied traffic).

Thin: resolve the inventory and the span (as `labctl verify` does), open the host pool, call
the core (`labctl.compare.fetch.run_compare`), render, write the report, map the verdict to
an exit code (3: a regression, or nothing could be judged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from labctl.cli.app import app, invoked_at
from labctl.cli.render import compare as rc
from labctl.cli.verify import WINDOW_HELP, parse_duration, resolve_inventory
from labctl.compare import document as doc
from labctl.compare import fetch as core
from labctl.errors import CompareFailed, UsageError
from labctl.inventory.models import Inventory
from labctl.report import compare as compare_report
from labctl.transport.pool import HostPool
from labctl.verify.fetch import resolve_scope

_INV_HELP = "Inventory with a baseline and a candidate target (default: the lab that is up)."


def _pool(inv: Inventory) -> HostPool:
    return HostPool.open(inv)


@app.command("compare")
def compare_cmd(
    inventory: Optional[Path] = typer.Argument(None, help=_INV_HELP),
    window: Optional[str] = typer.Option(None, "--window", help=WINDOW_HELP),
    since_up: bool = typer.Option(False, "--since-up", help="Compare everything since `up`."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    report_dir: Optional[Path] = typer.Option(None, "--report",
                                              help="Write report.json and report.md here."),
) -> None:
    """Baseline vs candidate target: per-endpoint errors, status, body size and latency,
    flagged only beyond the noise; exit 3 on a regression."""
    if window is not None and since_up:
        raise UsageError("give either --window or --since-up, not both")
    inv = resolve_inventory(inventory, "compare")
    core.compared_targets(inv)  # a usage error before any host is contacted
    seconds = parse_duration(window) if window is not None else None
    scope = resolve_scope(inv, since_up, seconds, anchor=invoked_at())
    with _pool(inv) as pool:
        report = core.run_compare(inv, pool, scope)
    if as_json:
        typer.echo(doc.to_json(report))
    else:
        Console().print(rc.compare_view(report))
    if report_dir is not None:
        written = compare_report.write_report(report, report_dir)
        typer.echo("report: " + ", ".join(str(p) for p in written), err=True)
    if not report.verdict.passed:
        raise CompareFailed(f"verdict {doc.verdict_word(report)}: " +
                            "; ".join(report.verdict.reasons),
                            hint="the flags name each endpoint with example requests; "
                                 "--report DIR keeps them")
