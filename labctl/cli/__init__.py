"""The `labctl` command line: parse, call the core, render, map errors to exit codes.

`app` (labctl.cli.app) is the typer application; each group of commands lives in its own module
(`ops`, `demo`, `lab`, `verify`, `compare`, `drill`) and registers itself on `app` when
imported, which this package does at import. `render/` turns reports into rich tables and
JSON; `console` holds the rich consoles and the progress spinner; `help` makes every
command's help and usage readable (no `<bool>` for flags, `INVENTORY` for arguments). `main`
is the console entry point and the one place that turns errors into messages and exit codes.

May import: every labctl package (cli is the top layer). Only labctl.cli imports typer or rich.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from labctl.cli import app as _app
from labctl.errors import ExitCode, LabctlError
from labctl.up.hooks import NO_HOOKS, Hooks

# Imported for their side effect of registering commands on `app`, in the order `labctl --help`
# lists them (the pipeline's order), hence no isort here.
# isort: off
from labctl.cli import ops  # noqa: F401  (up, plan, status, down)
from labctl.cli import demo  # noqa: F401
from labctl.cli import verify  # noqa: F401  (verify, diagnose)
from labctl.cli import compare  # noqa: F401
from labctl.cli import drill  # noqa: F401
from labctl.cli import lab  # noqa: F401  (the `lab` group is listed last anyway)
# isort: on

__all__ = ["main"]


def main(argv: Optional[list[str]] = None, hooks: Hooks = NO_HOOKS) -> int:
    """Console entry point: run the app, turn every error into a message and an exit code.
    `hooks` (tests only, see labctl.up.hooks) reach `up` and `plan` as the click context's obj."""
    _app.DEBUG = "--debug" in (argv if argv is not None else sys.argv[1:])
    _app.INVOKED_AT = _app.command_started_at() if argv is None else None
    try:
        _app.app(args=argv, prog_name="labctl", standalone_mode=False, obj=hooks)
    except LabctlError as exc:
        if _app.DEBUG:
            raise
        typer.echo(exc.render(), err=True)
        return _exit(int(exc.exit_code))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return _exit(int(ExitCode.INTERRUPTED))
    except SystemExit as exc:
        return _exit(exc.code if isinstance(exc.code, int) else int(ExitCode.ERROR))
    except Exception as exc:  # the one place that renders unexpected errors
        if _app.DEBUG:
            raise
        if _is_usage_error(exc):
            # click's own wording names the option ("Invalid value for '--deadman': ...")
            fmt = getattr(exc, "format_message", None)
            typer.echo(f"error: {fmt() if callable(fmt) else exc}", err=True)
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
