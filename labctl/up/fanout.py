"""`up`'s work spread over hosts (labctl.up.execute uses it): a stage runs each host's own
changes in plan order, hosts in parallel (bounded by the pool), and waits for every host, so one
host failing never loses the others' outcomes; the errors of several hosts become one message
naming each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

from labctl.errors import RemoteError
from labctl.model import Change
from labctl.transport.pool import HostPool, Outcome


def by_host(changes: Sequence[Change]) -> dict[str, list[Change]]:
    """The changes grouped by host, hosts in first-seen order, each host's in plan order."""
    out: dict[str, list[Change]] = {}
    for change in changes:
        out.setdefault(change.host, []).append(change)
    return out


def run_stage(pool: HostPool, phase: str, changes: Sequence[Change],
              do: Callable[[Change], None]) -> dict[str, Outcome[None]]:
    """`do(change)` for every change: hosts in parallel, each host's changes in order (a host
    stops at its first failure). One Outcome per host that had changes."""
    groups = by_host(changes)

    def host_changes(host: str) -> None:
        for change in groups[host]:
            do(change)

    return pool.run({h: h for h in groups}, host_changes, phase, str)


def first_failure(outcomes: dict[str, Outcome[None]]) -> Optional[BaseException]:
    return next((o.error for o in outcomes.values() if o.error is not None), None)


def host_errors(exc: BaseException, host: Optional[str] = None) -> dict[str, str]:
    """{host: message} of one failure (the error's own host first, else `host`, else "*")."""
    host = getattr(exc, "host", None) or host or "*"
    return {host: getattr(exc, "message", None) or str(exc)}


def hosts_error(errors: dict[str, str], hint: Optional[str] = None) -> RemoteError:
    """One error naming what failed on each host (after the rollback of every host)."""
    lines = [f"[{host}] {msg}" for host, msg in errors.items()]
    return RemoteError(f"up failed on {len(lines)} hosts (every host was rolled back):\n  "
                       + "\n  ".join(lines), hint=hint)
