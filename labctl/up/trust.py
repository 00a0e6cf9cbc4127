"""Is a host's journal one labctl could have written for this lab and host? (pure)

`down`, `status` and a failed `up` act on what a host's journal lists: files they read, daemons
they stop, and undo/probe commands they run as root. A journal is a file on that host, so
whoever is root there could plant a different one. Before acting on it, labctl checks it
against what it could have planned itself:

- its `lab` and `host` are the inventory's (they also name the local copy);
- every daemon's files lie in the host's own state directory, and a systemd unit is this lab's;
- every undo and probe command has the shape of one labctl plans for that entry's kind: a
  `proto 252` route, this lab's `LABCTL-<lab>` chain, a `net.*` sysctl, a netem qdisc, a daemon
  stopped by its pid file or unit.

Anything else refuses the journal (`JournalRefused`, naming the host and what did not fit);
nothing of it is run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Optional

from labctl.errors import LabctlError
from labctl.hosts.journal import Journal
from labctl.model import ROUTE_PROTO, ChangeKind
from labctl.up.plan import IPT, NONEMPTY

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SYSCTL_KEY = re.compile(r"^net\.[A-Za-z0-9_.-]+$")
NUMBER = re.compile(r"^-?[0-9]+$")
DEVICE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
TABLES = ("filter", "nat", "mangle", "raw", "security")


class JournalRefused(LabctlError):
    """A host's journal does not fit what labctl could have written: nothing of it is run."""


def _in_dir(path: str, hdir: str) -> bool:
    p = PurePosixPath(path)
    return p.is_absolute() and ".." not in p.parts and str(p).startswith(hdir.rstrip("/") + "/")


def _route(argv: Sequence[str], probe: bool) -> bool:
    if probe:
        return (list(argv[:3]) == ["python3", "-c", NONEMPTY] and list(argv[3:5]) == ["ip", "route"]
                and list(argv[-2:]) == ["proto", str(ROUTE_PROTO)])
    return list(argv[:3]) == ["ip", "route", "del"] and list(argv[-2:]) == ["proto",
                                                                             str(ROUTE_PROTO)]


def _iptables(argv: Sequence[str], chain: str, probe: bool) -> bool:
    if list(argv[:2]) != list(IPT) or len(argv) < 6 or argv[2] != "-t" or argv[3] not in TABLES:
        return False
    ops = ("-C",) if probe else ("-D", "-F", "-X")
    if argv[4] not in ops:
        return False
    # this lab's chain is what the command works on, or what the rule jumps to
    return argv[5] == chain or list(argv[-2:]) == ["-j", chain]


def _sysctl(argv: Sequence[str], probe: bool) -> bool:
    if probe:
        return (len(argv) == 4 and list(argv[:2]) == ["grep", "-qx"] and bool(NUMBER.match(argv[2]))
                and argv[3].startswith("/proc/sys/net/") and ".." not in argv[3])
    if len(argv) != 3 or list(argv[:2]) != ["sysctl", "-w"]:
        return False
    key, _, value = argv[2].partition("=")
    return bool(SYSCTL_KEY.match(key)) and bool(NUMBER.match(value))


def _qdisc(argv: Sequence[str]) -> bool:
    return (len(argv) == 6 and list(argv[:4]) == ["tc", "qdisc", "del", "dev"]
            and bool(DEVICE.match(argv[4])) and argv[5] == "root")


def _daemon(argv: Sequence[str], hdir: str, lab: str) -> bool:
    if list(argv[:2]) == ["systemctl", "stop"] and len(argv) == 3:
        return argv[2].startswith(f"labctl-{lab}-")
    return (list(argv[:3]) == ["pkill", "-TERM", "-F"] and len(argv) in (4, 6)
            and _in_dir(argv[3], hdir) and (len(argv) == 4 or argv[4] == "-f"))


def _argv_ok(kind: str, argv: Sequence[str], probe: bool, hdir: str, lab: str,
             chain: str) -> bool:
    if not argv or any(not isinstance(w, str) for w in argv):
        return False
    if kind == ChangeKind.ROUTE.value:
        return _route(argv, probe)
    if kind == ChangeKind.IPTABLES.value:
        return _iptables(argv, chain, probe)
    if kind == ChangeKind.SYSCTL.value:
        return _sysctl(argv, probe)
    if kind == ChangeKind.QDISC.value:
        return not probe and _qdisc(argv)
    if kind == ChangeKind.DAEMON.value:
        return not probe and _daemon(argv, hdir, lab)
    return False


def journal_problems(j: Journal, lab: str, host: str, hdir: str, chain: str) -> list[str]:
    """What in `j` labctl could not have written for `lab`/`host` (empty: it fits)."""
    out: list[str] = []
    if j.lab != lab or j.host != host:
        out.append(f"it belongs to lab {j.lab!r} host {j.host!r}, not lab {lab!r} host {host!r}")
    dm = j.deadman
    if dm is not None:
        if not _in_dir(dm.confirm_file, hdir) or (dm.pid_file and not _in_dir(dm.pid_file, hdir)):
            out.append(f"its dead-man timer has files outside {hdir}")
        if dm.unit and not dm.unit.startswith(f"labctl-{lab}-"):
            out.append(f"its dead-man timer names unit {dm.unit!r}, not one of this lab's")
    for d in j.daemons:
        files = (d.pid_file, d.stats_file, d.log_file,
                 *(f for f in (d.supervisor_pid_file, d.supervisor_state_file) if f))
        if not SAFE_NAME.match(d.name) or not all(_in_dir(f, hdir) for f in files):
            out.append(f"daemon {d.name!r} has files outside {hdir}")
        if d.unit and not d.unit.startswith(f"labctl-{lab}-"):
            out.append(f"daemon {d.name!r} names unit {d.unit!r}, not one of this lab's")
    for e in j.entries:
        for argv in e.undo:
            if not _argv_ok(e.kind, argv, False, hdir, lab, chain):
                out.append(f"entry {e.seq} ({e.kind}) would undo with `{' '.join(argv)}`")
        if e.probe and not _argv_ok(e.kind, e.probe, True, hdir, lab, chain):
            out.append(f"entry {e.seq} ({e.kind}) would probe with `{' '.join(e.probe)}`")
    return out


def check_journal(j: Optional[Journal], lab: str, host: str, hdir: str, chain: str,
                  where: str) -> Optional[Journal]:
    """`j` if it fits (or None); else JournalRefused naming the host and the first misfits."""
    if j is None:
        return None
    problems = journal_problems(j, lab, host, hdir, chain)
    if problems:
        raise JournalRefused(
            f"refusing the journal {where}: " + "; ".join(problems[:3])
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""),
            host=host,
            hint="labctl did not write this: inspect the host; nothing of the journal was run")
    return j


__all__ = ["JournalRefused", "check_journal", "journal_problems"]
