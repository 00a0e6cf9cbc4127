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
from labctl.transport.base import Result, Transport
from labctl.transport.pool import HostPool
from labctl.up.lock import lock_and_read, release_lock


def runs_dir(inv: Inventory, name: str) -> str:
    return host_dir(inv.state_dir, inv.lab, name)


def take_locks(pool: HostPool, inv: Inventory, locked: list[str],
               journals: Optional[dict[str, Result]] = None) -> list[str]:
    """Lock every host (the first alone); each host locked is appended to `locked` as it is
    (so a failure releases exactly those). Returns the notes (stale locks broken); the first
    error is raised once every host of its group was tried. `journals`: filled with each
    host's journal as read under its lock, in the lock's round trip (for `refuse_if_live`)."""
    def lock_one(spec: HostSpec, t: Transport) -> list[str]:
        hdir = runs_dir(inv, spec.name)
        notes, read = lock_and_read(t, hdir, journal_path(hdir))
        locked.append(spec.name)
        if read is not None and journals is not None:
            journals[spec.name] = read
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


def release_one(inv: Inventory, locked: list[str], spec: HostSpec, t: Transport) -> None:
    """Release one host's lock from a task of another phase (`up` does it right after the
    host's log marks, saving a phase of its own). The host leaves `locked` only once released:
    one whose release failed is retried by the final `release_locks`."""
    if spec.name not in locked:
        return
    try:
        release_lock(t, runs_dir(inv, spec.name))
    except (LabctlError, OSError):
        return
    locked.remove(spec.name)   # (one call: the other hosts' tasks cannot interleave in it)


def refuse_if_live(pool: HostPool, inv: Inventory,
                   journals: Optional[dict[str, Result]] = None) -> None:
    """Under the lock: a host whose journal is neither down nor rolled back still carries an
    `up` (one that just finished beside this one, or a crashed one). A new journal would
    orphan what that one lists, so this `up` stops here, having changed nothing. `journals`:
    the journals `take_locks` read (a host missing there is read now)."""
    def state_of(spec: HostSpec, t: Transport) -> Optional[tuple[str, str]]:
        j = read_remote(t, journal_path(runs_dir(inv, spec.name)), sudo=True,
                        read=(journals or {}).get(spec.name))
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
