"""The two rich consoles (created on first use, then shared) and the progress spinner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Callable

from rich.console import Console
from rich.markup import escape
from rich.text import Text


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
