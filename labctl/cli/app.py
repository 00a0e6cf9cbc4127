"""The typer application every command module registers on, its root callback, the
process-wide CLI state (`DEBUG`, set by `--debug`; `INVOKED_AT`, when the command started), and
the options several commands share."""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import typer

from labctl.cli.help import Typer

#: Show tracebacks instead of rendered errors (`--debug`); set by `main` and the root callback.
DEBUG = False
#: When this command started (epoch s), set by `main` for a console run: `--window N` counts its
#: N seconds back from there, not from when the logs are read after labctl's own start-up
#: (~1-2.5 s of imports and connecting). None (an in-process call): from the read.
INVOKED_AT: Optional[float] = None


def invoked_at() -> Optional[float]:
    return INVOKED_AT


def started_at(now: float, uptime: str, stat: str, ticks: int) -> Optional[float]:
    """When a process started (epoch s), from the text of /proc/uptime and of its
    /proc/PID/stat (field 22, in clock ticks since boot) and the ticks per second; None when
    they make no sense (an age below 0 or above an hour)."""
    try:
        since_boot = float(uptime.split()[0])
        ticks_at_start = int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
    age = since_boot - ticks_at_start / ticks
    return now - age if 0.0 <= age < 3600.0 else None


def command_started_at() -> Optional[float]:
    """This process's start (Linux /proc); None where it cannot be read."""
    try:
        with open("/proc/uptime") as up, open("/proc/self/stat") as st:
            return started_at(time.time(), up.read(), st.read(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None

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
