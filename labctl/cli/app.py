"""The typer application every command module registers on, its root callback, and the one
process-wide CLI switch (`DEBUG`, set by `--debug`)."""

from __future__ import annotations

import typer

from labctl.cli.help import Typer

#: Show tracebacks instead of rendered errors (`--debug`); set by `main` and the root callback.
DEBUG = False

app = Typer(
    name="labctl",
    help="Copy live TCP traffic from an online server to a target server, and run the copy lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    global DEBUG
    DEBUG = debug
