"""The per-host lock: one `up`/`down` per lab at a time (`mkdir <hdir>/lock`, atomic, with an
owner file naming the labctl that holds it; a lock whose owner died on this operator machine is
broken). Taken together with the state directory, the owner file and (optionally) a file's read
in one round trip where the host runs chains. labctl.up.exclusive takes the locks of a lab.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import PurePosixPath
from typing import Optional

from labctl.errors import LabctlError, RemoteError
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_chain
from labctl.transport.textfile import temp_path, write_argv, write_text
from labctl.up.statedir import mkdir_argv


def lock_dir(hdir: str) -> str:
    return str(PurePosixPath(hdir) / "lock")


def _owner() -> dict[str, object]:
    return {"pid": os.getpid(), "operator": socket.gethostname(), "since": time.time()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_owner(owner: dict[str, object]) -> bool:
    """A lock left by a labctl that died on this operator machine (e.g. kill -9)."""
    pid = owner.get("pid")
    same_machine = owner.get("operator") == socket.gethostname()
    return same_machine and isinstance(pid, int) and not _pid_alive(pid)


#: Seconds a lock without its owner file is given before it counts as stale (a concurrent
#: `up` between its mkdir and its owner write; broken at once, it lost its own lock).
OWNER_WAIT = 3.0


def acquire_lock(transport: Transport, hdir: str, sudo: bool = True) -> list[str]:
    """mkdir-lock `<hdir>/lock` (atomic); breaks a stale lock. Returns notes about what it did."""
    return lock_and_read(transport, hdir, None, sudo)[0]


def lock_and_read(transport: Transport, hdir: str, path: Optional[str], sudo: bool = True
                  ) -> tuple[list[str], Optional[Result]]:
    """`acquire_lock`, and `cat path` once the lock is ours: the state directory, the lock,
    its owner file and the read in one round trip where the host runs chains (the read is
    None when it was not made: the caller reads it)."""
    notes: list[str] = []
    lock = lock_dir(hdir)
    owner = json.dumps(_owner())
    argvs = [mkdir_argv(hdir), ["mkdir", lock],
             write_argv(temp_path(f"{lock}/owner.json"), f"{lock}/owner.json")]
    first = run_chain(transport, [*argvs, *([["cat", path]] if path else [])], stdin=owner,
                      stdin_at=2, sudo=sudo)
    if first is None:                       # no chains on this host: one command at a time
        transport.run(mkdir_argv(hdir), sudo=sudo).check()
    else:
        first[0].check()
        if len(first) > 2:                  # the lock is ours (the owner written, or not)
            first[2].check()
            return notes, first[3] if len(first) > 3 else None
    for attempt in range(2):
        res = first[1] if first is not None and attempt == 0 else \
            transport.run(["mkdir", lock], sudo=sudo)
        if res.ok:
            _write_owner(transport, lock, sudo)
            return notes, None
        owner_seen = _read_owner(transport, lock, sudo)
        waited = 0.0
        while owner_seen is None and waited < OWNER_WAIT:  # its taker writes the owner right
            time.sleep(0.25)                               # after its mkdir: a lock without
            waited += 0.25                                 # one is being taken, not stale,
            owner_seen = _read_owner(transport, lock, sudo)  # for a moment
        if owner_seen is not None and not stale_owner(owner_seen):
            raise LabctlError(
                f"another labctl (pid {owner_seen.get('pid')} on "
                f"{owner_seen.get('operator')}) holds the lock {lock}",
                hint="wait for it to finish; if no labctl is running, remove that directory",
                host=transport.host,
            )
        notes.append(f"broke stale lock {lock} (owner {owner_seen})")
        transport.run(["rm", "-rf", lock], sudo=sudo).check()
    raise RemoteError(f"cannot take the lock {lock}", host=transport.host)


def _write_owner(transport: Transport, lock: str, sudo: bool) -> None:
    write_text(transport, f"{lock}/owner.json", json.dumps(_owner()), sudo=sudo).check()


def _read_owner(transport: Transport, lock: str, sudo: bool) -> Optional[dict[str, object]]:
    res = transport.run(["cat", f"{lock}/owner.json"], sudo=sudo)
    try:
        data = json.loads(res.stdout) if res.ok else None
    except ValueError:
        data = None
    return data if isinstance(data, dict) else None


def release_lock(transport: Transport, hdir: str, sudo: bool = True) -> None:
    transport.run(["rm", "-rf", lock_dir(hdir)], sudo=sudo)
