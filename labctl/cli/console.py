"""The two rich consoles (created on first use, then shared), the progress spinner and the live
per-host table of fleet commands (`hosts_progress`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from labctl.cli.render.hosts import HostBoard

Say = Callable[[str], None]
Watch = Callable[[str, str, str], None]


@cache
def out() -> Console:
    """stdout: tables and JSON documents."""
    return Console()


@cache
def err() -> Console:
    """stderr: progress lines wrap softly instead of being cut into 80-column pieces."""
    return Console(stderr=True, soft_wrap=True)


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A live spinner on stderr; each message is also printed as a line (kept in the scroll).
    Long lines wrap softly at the terminal's width (never cut into fixed 80-column pieces);
    the spinner shows the message's first line, cropped to one line."""
    if not enabled:
        yield lambda msg: None
        return
    console = err()
    with console.status("starting", spinner="dots") as spinner:
        def say(msg: str) -> None:
            console.print(f"[dim]·[/dim] {escape(msg)}", highlight=False)
            spinner.update(Text(msg.splitlines()[0] if msg else "", no_wrap=True,
                                overflow="ellipsis"))

        yield say


def _unwatched(host: str, phase: str, state: str) -> None:
    """No per-host table (--json): hears nothing."""


@contextmanager
def hosts_progress(hosts: list[str], board: bool = True) -> Iterator[tuple[Say, Watch]]:
    """(say, watch) for a command working on many hosts. On a terminal one live display: the
    latest message and a table of every host's phase and state (kept on screen at the end);
    elsewhere `say` prints lines and `watch` one plain line per host and finished phase.
    `board=False` (--json): the spinner only, no per-host output."""
    if not board:
        with progress() as say:
            yield say, _unwatched
        return
    console = err()
    table = HostBoard(hosts)
    lock = threading.Lock()
    if not console.is_terminal:
        def say_plain(msg: str) -> None:
            console.print(f"· {escape(msg)}", highlight=False)

        def watch_plain(host: str, phase: str, state: str) -> None:
            with lock:
                table.update(host, phase, state, time.monotonic())
                if state != "running":
                    console.print(escape(table.line(host, time.monotonic())), highlight=False)

        yield say_plain, watch_plain
        return
    latest = ["starting"]

    def render() -> Group:
        with lock:
            return Group(Text(latest[0], no_wrap=True, overflow="ellipsis", style="dim"),
                         table.table(time.monotonic()))

    with Live(get_renderable=render, console=console, refresh_per_second=8,
              transient=False):
        def say(msg: str) -> None:
            console.print(f"[dim]·[/dim] {escape(msg)}", highlight=False)
            latest[0] = msg.splitlines()[0] if msg else ""

        def watch(host: str, phase: str, state: str) -> None:
            with lock:
                table.update(host, phase, state, time.monotonic())

        yield say, watch
