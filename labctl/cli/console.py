"""The two rich consoles, created on first use (importing rich costs start-up time)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    from rich.console import Console

    return Console()


@cache
def err() -> Console:
    """stderr: progress lines wrap softly instead of being cut into 80-column pieces."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)
