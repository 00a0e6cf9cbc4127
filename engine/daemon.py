"""Process helpers shared by the daemons (acts): detaching (``-d``), the pid file (``-P``) and
the ``--netem-file`` of the copy path's conditions."""

from __future__ import annotations

import os
from typing import Dict, Optional, TypeVar

from engine.netem import Netem, NetemSpec, parse_file
from engine.stats import Logger

T = TypeVar("T")


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


def start_netem(path: Optional[str], flags: NetemSpec,
                counters: Dict[str, int]) -> Optional[Netem[T]]:
    """The shaper a daemon starts with (``read_netem``): None when no condition is active (the
    direct path). Raises ValueError naming the file."""
    shaping = read_netem(path, flags)
    return Netem(shaping, counters, seed=os.getpid()) if shaping.active else None


def reload_netem(current: Optional[Netem[T]], path: Optional[str], flags: NetemSpec,
                 counters: Dict[str, int], log: Logger, what: str) -> Optional[Netem[T]]:
    """SIGHUP: read ``--netem-file`` again (a drill changed the conditions of ``what``, the
    copies or the response frames). Returns the shaper to use from now on: None once no
    condition is active and nothing is held (the direct path again); a bad file is logged,
    counted (``netem_file_errors``) and changes nothing."""
    if not path:
        log.warn("SIGHUP ignored: no --netem-file")
        return current
    try:
        spec = read_netem(path, flags)
    except ValueError as exc:
        counters["netem_file_errors"] = counters.get("netem_file_errors", 0) + 1
        log.error(f"{exc}; conditions unchanged")
        return current
    log.notice(f"netem on {what}: {spec.describe()}")
    if current is None:
        return Netem(spec, counters, seed=os.getpid()) if spec.active else None
    if spec.active or len(current):
        current.reconfigure(spec)           # (held items still go at their times)
        return current
    return None
