"""Process helpers shared by the daemons (acts): detaching (``-d``) and the pid file (``-P``)."""

from __future__ import annotations

import os
from typing import Optional


def daemonize(workdir: Optional[str] = "/") -> None:
    """Detach: fork twice, new session, stdio to /dev/null; the parents exit 0.

    ``workdir``: where the daemon then runs (None keeps the current directory, for a daemon
    that still opens paths given relative to it)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if workdir is not None:
        os.chdir(workdir)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def write_pidfile(path: str) -> None:
    """Atomically write this process's pid (temp file + rename)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, path)
