"""The typer application every command module registers on, its root callback, the one
process-wide CLI switch (`DEBUG`, set by `--debug`), and the options several commands share."""

from __future__ import annotations

from typing import Any

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


#: `--parallel`'s default and bounds (every multi-host command)
PARALLEL_DEFAULT, PARALLEL_MAX = 32, 1024


def parallel_option(help: str) -> Any:
    """`--parallel N` (shown as `N`, not as an `<int range>`)."""
    return typer.Option(PARALLEL_DEFAULT, "--parallel", min=1, max=PARALLEL_MAX, metavar="N",
                        help=help)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    global DEBUG
    DEBUG = debug
