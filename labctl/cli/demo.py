"""`labctl demo`: the README's first command (thin wrapper around labctl.demo)."""

from __future__ import annotations

import typer
from rich.table import Table

from labctl.cli.app import app
from labctl.cli.console import out, progress
from labctl.demo import DemoReport, run_demo
from labctl.plain import dumps


@app.command()
def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the lab afterwards (labctl lab down)."),
    requests: int = typer.Option(200, "--requests", min=1, metavar="N",
                                 help="Client requests to send."),
    name: str = typer.Option("demo", "--name", help="Lab name (1-8 characters: a lowercase "
                             "letter, then lowercase letters or digits)."),
    two_server: bool = typer.Option(False, "--two-server", help="Use the two-server topology."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Build the local lab, copy real client traffic to the target, undo everything."""
    topology = "two-server" if two_server else "three-server"
    with progress() as say:
        report = run_demo(name, requests, keep, say, topology=topology)
    if json_out:
        out().print_json(dumps(report))
    else:
        out().print(_table(report))
    if not report.ok:
        raise typer.Exit(1)


def _table(r: DemoReport) -> Table:
    table = Table(title=f"demo: lab {r.lab} ({r.topology})")
    table.add_column("what")
    table.add_column("result")
    t = r.traffic
    table.add_row("client requests sent", f"{t.get('sent', '-')} (ok {t.get('ok', '-')})")
    table.add_row("seen by online nginx", str(r.online_requests))
    table.add_row("copies at the target", str(r.target_copies))
    table.add_row("up / down", f"{'ok' if r.up_ok else 'FAILED'} / "
                  f"{'ok' if r.down_ok else 'FAILED'} (second down no-op: {r.down_noop_twice})")
    table.add_row("verdict", "[green]copied[/green]" if r.ok else f"[red]FAILED[/red] {r.error}")
    return table
