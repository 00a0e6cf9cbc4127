"""Help and usage lines as people expect them, for every command and group.

typer's own rendering shows a flag as `--json <bool>` and a required positional argument as
`{inventory}` in the usage line. Here: a flag shows no value at all, a positional argument is
its upper-case name (`INVENTORY`, `[INVENTORY]` when optional) in the usage line and in the
Arguments panel, and a value option keeps its type and range (`--deadman <float range>`) or
its metavar (`--report DIR`).

`Typer` is the typer application class every command module uses; its commands and groups
re-class their parameters to the two readable kinds below when the help is rendered (the
parameters parse exactly as before: only the display methods differ).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class ReadableArgument(TyperArgument):
    """A positional argument shown as `INVENTORY` (usage line, panel, error messages)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "ARG").upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> Optional[str]:
        return None  # the upper-case name says what it is; no `<str>` beside it


class ReadableOption(TyperOption):
    """A flag shows no value placeholder; a value option keeps typer's `<type>` or metavar."""

    def display_type_rich(self, ctx: Any) -> Optional[str]:
        if self.is_flag and self.metavar is None:
            return None
        return super().display_type_rich(ctx)


def readable(params: list[Any]) -> list[Any]:
    """The same parameter objects, re-classed to their readable kinds (idempotent)."""
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = ReadableArgument
        elif type(p) is TyperOption:
            p.__class__ = ReadableOption
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return readable(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return readable(super().get_params(ctx))


class Typer(typer.Typer):
    """typer.Typer whose groups and commands render readable help (see the module doc)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
