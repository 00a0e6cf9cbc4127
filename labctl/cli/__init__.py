"""The `labctl` command line: parse, call the core, render, map errors to exit codes.

Each group of commands lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from labctl.cli import state
from labctl.errors import ExitCode, LabctlError

app = typer.Typer(
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
    state.DEBUG = debug


def _register() -> None:
    # Imported for their side effect of adding commands to `app`.
    from labctl.cli import drill as _drill  # noqa: F401
    from labctl.cli import lab as _lab  # noqa: F401
    from labctl.cli import ops as _ops  # noqa: F401
    from labctl.cli import verify as _verify  # noqa: F401


_register()


def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: run the app, turn every error into a message and an exit code."""
    state.DEBUG = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except LabctlError as exc:
        if state.DEBUG:
            raise
        typer.echo(exc.render(), err=True)
        return _exit(int(exc.exit_code))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return _exit(int(ExitCode.INTERRUPTED))
    except SystemExit as exc:
        return _exit(exc.code if isinstance(exc.code, int) else int(ExitCode.ERROR))
    except Exception as exc:  # the one place that renders unexpected errors
        if state.DEBUG:
            raise
        if _is_usage_error(exc):
            typer.echo(f"error: {exc}", err=True)
            return _exit(int(ExitCode.USAGE))
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        typer.echo("hint: run again with --debug for the traceback", err=True)
        return _exit(int(ExitCode.ERROR))
    return _exit(0)


def _is_usage_error(exc: Exception) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"UsageError", "BadParameter", "NoSuchOption", "MissingParameter"})


def _exit(code: int) -> int:
    sys.exit(code)
