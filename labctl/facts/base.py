"""A fact is an argv plus a pure parser: `Fact(name, argv, parse)`; `parse(Result) -> value`.

Parsers never do I/O; they raise `FactParseError` on output they do not understand. `run_fact`
is the only place a fact meets a transport, and it turns every failure into an error string so a
missing tool on one host becomes a recorded "unknown", never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, TypeVar

from labctl.errors import LabctlError
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch

T = TypeVar("T")

#: Exit code of a command that is not installed (shell convention; our transports use it too).
NOT_FOUND = 127


class FactParseError(ValueError):
    """Output a parser does not understand; the message says what was expected."""


@dataclass(frozen=True)
class Fact(Generic[T]):
    name: str
    argv: tuple[str, ...]
    parse: Callable[[Result], T]
    sudo: bool = False
    timeout: float = 20.0


@dataclass(frozen=True)
class FactValue(Generic[T]):
    """A gathered fact: its value, or why it is unknown."""

    name: str
    value: Optional[T] = None
    error: Optional[str] = None

    @property
    def known(self) -> bool:
        return self.error is None


def run_fact(transport: Transport, fact: Fact[T]) -> FactValue[T]:
    """Run one fact; never raises for remote or parse failures (they become `error`)."""
    try:
        result = transport.run(list(fact.argv), sudo=fact.sudo, timeout=fact.timeout)
    except LabctlError as exc:
        return FactValue(fact.name, error=exc.message)
    return parse_fact(fact, result)


def parse_fact(fact: Fact[T], result: Result) -> FactValue[T]:
    """A fact's value from its command's result (pure)."""
    try:
        return FactValue(fact.name, value=fact.parse(result))
    except FactParseError as exc:
        return FactValue(fact.name, error=f"`{' '.join(fact.argv)}`: {exc}")


def run_facts(transport: Transport, facts: Sequence[Fact[Any]]) -> list[FactValue[Any]]:
    """Several facts in as few round trips as possible: one batch per sudo flag. A batch the
    host cannot run (or a link that fails during it) falls back to one command per fact."""
    out: dict[str, FactValue[Any]] = {}
    for sudo in (False, True):
        group = [f for f in facts if f.sudo == sudo]
        if not group:
            continue
        try:
            results = run_batch(transport, [f.argv for f in group], sudo=sudo,
                                timeout=sum(f.timeout for f in group))
        except LabctlError:
            results = None
        if results is None:
            out.update((f.name, run_fact(transport, f)) for f in group)
        else:
            out.update((f.name, parse_fact(f, r)) for f, r in zip(group, results))
    return [out[f.name] for f in facts]


def require_ok(result: Result) -> str:
    """stdout of a successful command, or FactParseError with the stderr tail."""
    if result.exit_code == NOT_FOUND:
        raise FactParseError(f"{result.argv[0]} not found on the host")
    if not result.ok:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise FactParseError(f"exited {result.exit_code}: {tail}")
    return result.stdout


def to_int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FactParseError(f"{what}: expected a number, got {text.strip()[:40]!r}") from None


