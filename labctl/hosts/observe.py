"""One look at an engine daemon on its host, in one round trip: its pid file, the cmdline of
the pid it was started with (so a pid reused by another process is never taken for it), its stats
file, and any extra read-only argvs (`ss` for a listener). Readiness polls, `status`, the marks
at the end of `up` and `down`'s wait for the exit all use it (labctl.hosts.daemons re-exports).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from labctl.hosts.journal import DaemonRecord
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch


def read_stats(
    transport: Transport, stats_file: str, sudo: bool = True
) -> Optional[dict[str, Any]]:
    return _stats_of(transport.run(["cat", stats_file], sudo=sudo))


def _stats_of(res: Result) -> Optional[dict[str, Any]]:
    if not res.ok:
        return None
    try:
        data = json.loads(res.stdout)
    except ValueError:
        return None  # a torn read cannot happen (atomic rename), but never crash on it
    return data if isinstance(data, dict) else None


#: /proc/PID/stat's flags bit of a kernel thread (linux/sched.h)
PF_KTHREAD = 0x00200000


def _is_ours(record: DaemonRecord, cmdline: Result) -> bool:
    return cmdline.ok and record.name in cmdline.stdout and record.stats_file in cmdline.stdout


def named_or_mid_exec(transport: Transport, pid: int, cmdline: Result, named: bool,
                      sudo: bool = True) -> bool:
    """Pid `pid` is still the process we started: its cmdline (`cmdline`, already read) names it
    (`named`), or it is empty while the process is inside an exec. The kernel switches a process
    to its new image before it sets the new argv: detach's exec of a daemon (or supervisor), and
    a daemon's re-exec under PyPy, each pass through that window, and a poll that lands in it
    must not take a starting daemon for a dead one. An empty cmdline is also what a zombie and a
    kernel thread show: /proc/PID/stat (one more round trip, only then) tells them apart."""
    if named:
        return True
    if not cmdline.ok or cmdline.stdout:
        return False
    return _running_user_process(transport.run(["cat", f"/proc/{pid}/stat"], sudo=sudo))


def _running_user_process(stat: Result) -> bool:
    """/proc/PID/stat names a live process, not a zombie and not a kernel thread."""
    if not stat.ok:
        return False
    fields = stat.stdout.rpartition(")")[2].split()   # after the comm, which may hold spaces
    try:
        state, flags = fields[0], int(fields[6])
    except (IndexError, ValueError):
        return False
    return state not in ("Z", "X", "x") and not flags & PF_KTHREAD


def current_pid(transport: Transport, record: DaemonRecord, sudo: bool = True) -> Optional[int]:
    """The daemon's pid if it is alive and really ours (/proc/PID/cmdline names the daemon)."""
    return observe(transport, record, sudo, stats=False).pid


@dataclass
class Observed:
    """One look at a daemon: its pid (None: not running, or not ours), its stats file, and the
    results of any extra read-only argvs asked for in the same round trip. `final`: the stats
    were read after the pid was found gone (a daemon writes its last stats before it exits)."""

    pid: Optional[int]
    stats: Optional[dict[str, Any]]
    extra: list[Result] = field(default_factory=list)
    final: bool = False


def observe(transport: Transport, record: DaemonRecord, sudo: bool = True, stats: bool = True,
            extra: Sequence[Sequence[str]] = ()) -> Observed:
    """The daemon's pid file, the cmdline of the pid it was started with, `extra` and its stats
    file (read last) in one round trip; a second one only when the pid file names another pid
    (that one's cmdline). Where batches do not run: one command at a time."""
    started = [["cat", f"/proc/{record.pid}/cmdline"]] if record.pid else []
    argvs = [["cat", record.pid_file], *[list(a) for a in extra], *started,
             *([["cat", record.stats_file]] if stats else [])]
    got = run_batch(transport, argvs, sudo=sudo) or [transport.run(a, sudo=sudo) for a in argvs]
    more = got[1:1 + len(extra)]
    candidates = [record.pid] if record.pid else []
    if got[0].ok and got[0].stdout.strip().isdigit():
        candidates.insert(0, int(got[0].stdout.strip()))
    pid, settled = None, True
    for cand in candidates:
        if cand == record.pid:
            cmd = got[1 + len(extra)]
        else:
            cmd, settled = transport.run(["cat", f"/proc/{cand}/cmdline"], sudo=sudo), False
        if named_or_mid_exec(transport, cand, cmd, _is_ours(record, cmd), sudo):
            pid = cand
            break
    found = _stats_of(got[-1]) if stats else None
    return Observed(pid, found, more, final=stats and pid is None and settled)
