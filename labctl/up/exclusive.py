"""One `up` at a time per lab: the host locks (the first host's alone, then the rest), their
release, and the refusal of a lab whose hosts still carry an earlier `up`'s journal.

The first host's lock is the lab's mutex: two `up`s racing for every host in parallel could
each win some hosts and both be refused; taking it alone first, the loser is refused there,
holding nothing.
"""

from __future__ import annotations

from typing import Optional

from labctl.errors import LabctlError
from labctl.hosts.journal import host_dir, journal_path, read_remote
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Transport
from labctl.transport.pool import HostPool
from labctl.up.apply import acquire_lock, release_lock


def runs_dir(inv: Inventory, name: str) -> str:
    return host_dir(inv.state_dir, inv.lab, name)


def take_locks(pool: HostPool, inv: Inventory, locked: list[str]) -> list[str]:
    """Lock every host (the first alone); each host locked is appended to `locked` as it is
    (so a failure releases exactly those). Returns the notes (stale locks broken); the first
    error is raised once every host of its group was tried."""
    def lock_one(spec: HostSpec, t: Transport) -> list[str]:
        notes = acquire_lock(t, runs_dir(inv, spec.name))
        locked.append(spec.name)
        return notes

    notes: list[str] = []
    names = [h.name for h in inv.all_hosts()]
    for group in (names[:1], names[1:]):
        for out in pool.each(lock_one, group, phase="lock").values():
            notes += out.unwrap()
    return notes


def release_locks(pool: HostPool, inv: Inventory, names: list[str]) -> None:
    """Release the named hosts' locks, in parallel."""
    pool.run({n: n for n in names},
             lambda n: release_lock(pool.transport(n), runs_dir(inv, n)), "unlock", str)


def refuse_if_live(pool: HostPool, inv: Inventory) -> None:
    """Under the lock: a host whose journal is neither down nor rolled back still carries an
    `up` (one that just finished beside this one, or a crashed one). A new journal would
    orphan what that one lists, so this `up` stops here, having changed nothing."""
    def state_of(spec: HostSpec, t: Transport) -> Optional[tuple[str, str]]:
        j = read_remote(t, journal_path(runs_dir(inv, spec.name)), sudo=True)
        return None if j is None else (j.state, j.run_id)

    live = []
    for name, out in pool.each(state_of).items():
        got = out.unwrap()
        if got is not None and got[0] not in ("down", "rolled_back"):
            live.append(f"{name} (journal {got[0]}, run {got[1]})")
    if live:
        raise LabctlError(
            f"lab {inv.lab} is not down on {', '.join(sorted(live))}; nothing was changed",
            hint="run `labctl down` first: it undoes exactly what that journal lists")
