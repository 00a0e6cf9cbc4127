"""Process helpers shared by the daemons (acts): detaching (``-d``), the pid file (``-P``) and
the ``--netem-file`` of the copy path's conditions."""

from __future__ import annotations

import os
from typing import Optional

from engine.netem import NetemSpec, parse_file


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


def read_netem(path: Optional[str], flags: NetemSpec) -> NetemSpec:
    """The copy path's conditions in effect: the ``--netem-file``'s while it exists, else the
    ``--netem-*`` flags'. Raises ValueError naming the file."""
    if not path:
        return flags
    try:
        with open(path) as fh:
            text = fh.read(65536)
    except FileNotFoundError:
        return flags
    except OSError as exc:
        raise ValueError(f"--netem-file {path}: {exc.strerror or exc}") from None
    try:
        return parse_file(text)
    except ValueError as exc:
        raise ValueError(f"--netem-file {path}: {exc}") from None
