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
    QDISC = "qdisc"     # a drill's netem qdisc (journaled, so `down` removes it)


@dataclass(frozen=True)
class Readiness:
    """When a started daemon counts as up: its process is alive and, for `kind` "listening",
    something listens on TCP `port` (intercept's channel); for "connected", its stats report a
    connection to every intercept (tcpcopy)."""

    kind: str  # "listening" | "connected"
    port: int = 0

    def describe(self) -> str:
        if self.kind == "listening":
            return f"alive and listening on :{self.port}"
        return "alive and connected to every intercept"


@dataclass(frozen=True)
class DaemonLaunch:
    """What a DAEMON change starts: an engine tool with its flags, the files it keeps on the
    host, and what "ready" means for it. The change's `apply` is the launch argv, its `undo`
    the stop argv (what the dead-man runs); `down` and rollback stop it gracefully."""

    name: str  # "intercept" | "tcpcopy"
    args: Argv  # the engine flags, without the pid/stats/log files
    pid_file: str
    stats_file: str
    log_file: str
    ready: Readiness
    unit: str = ""  # the systemd unit where the host runs systemd, else ""
    runtime: str = "python3"  # the interpreter on the host: "python3" | "pypy3"
    workers: int = 1  # engine workers (engine.workers, resolved for the host)
    #: engine.supervise: "engine" (the engine's supervisor), "systemd" (the unit restarts it),
    #: "" (not supervised)
    supervisor: str = ""


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
    #: Set on DAEMON changes: the daemon the `apply` argv starts.
    daemon: Optional[DaemonLaunch] = None


@dataclass(frozen=True)
class Plan:
    """Every change of an `up`, in execution order, plus why nothing happens where nothing does."""

    lab: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def daemons(self) -> tuple[Change, ...]:
        """The DAEMON changes (started after every other change, in this order)."""
        return tuple(c for c in self.changes if c.daemon is not None)

    def for_host(self, host: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.host == host)

    @property
    def hosts(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for change in self.changes:
            seen.setdefault(change.host, None)
        return tuple(seen)
