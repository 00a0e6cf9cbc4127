"""Core values shared by plan, apply, journal and status: changes and findings.

These are plain frozen dataclasses (not pydantic): they are computed, never parsed from users.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

Argv = tuple[str, ...]

#: Route protocol number that marks routes labctl added (`ip route ... proto 252`).
ROUTE_PROTO = 252
#: Prefix of every iptables chain labctl owns; rules also carry `-m comment labctl:<lab>:<step>`.
CHAIN_PREFIX = "LABCTL-"


class Severity(str, enum.Enum):
    ERROR = "error"
    WARN = "warn"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One preflight result. `refusal` findings protect SSH access: `--force` never skips them."""

    id: str
    severity: Severity
    host: str
    message: str
    hint: str = ""
    refusal: bool = False

    @property
    def blocks(self) -> bool:
        return self.severity is Severity.ERROR


class ChangeKind(str, enum.Enum):
    ROUTE = "route"
    IPTABLES = "iptables"
    SYSCTL = "sysctl"
    FILE = "file"
    DAEMON = "daemon"


@dataclass(frozen=True)
class Change:
    """One idempotent change on one host, with the exact argv to make and to undo it.

    `probe` (optional) is a read-only argv whose exit 0 means "already in place": apply then
    records a no-op with `noop_reason` instead of running `apply`.
    `guarded` changes are the ones that can cut a host off (routes, DROP rules): a dead-man
    rollback timer must be armed on the host before they run.
    """

    host: str
    step: str
    kind: ChangeKind
    description: str
    apply: tuple[Argv, ...]
    undo: tuple[Argv, ...]
    probe: Optional[Argv] = None
    noop_reason: str = ""
    guarded: bool = False


@dataclass(frozen=True)
class Plan:
    """Every change of an `up`, in execution order, plus why nothing happens where nothing does."""

    lab: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: What `up` starts after the changes, in order: "[host] tool flags..." (engine flags only).
    daemons: tuple[str, ...] = field(default_factory=tuple)

    def for_host(self, host: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.host == host)

    @property
    def hosts(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for change in self.changes:
            seen.setdefault(change.host, None)
        return tuple(seen)
