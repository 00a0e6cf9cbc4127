"""What the bench reads of the processes it started, and CPU pinning (Linux /proc only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

CLK = os.sysconf("SC_CLK_TCK")
CHANNEL_PORT = 36524        # intercept's channel port: the same default in ours and in the C tool


def cpu_split(pid: int) -> Tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK, int(fields[12]) / CLK


def cpu_tree(pid: int) -> Dict[int, Tuple[float, float]]:
    """{pid: (user, system) CPU seconds} of a process and all its descendants (``--workers N``:
    the parent and its forked workers; a worker's CPU reaches its parent's counters only once
    it is reaped, so each is read on its own). Processes gone meanwhile are left out."""
    out: Dict[int, Tuple[float, float]] = {}
    for p in descendants(pid):
        try:
            out[p] = cpu_split(p)
        except OSError:
            continue
    return out


def part_of(tree: Dict[int, Tuple[float, float]], part: Optional[int] = None) -> Dict[int, float]:
    """A ``cpu_tree`` read as {pid: seconds}: user+system, or only ``part`` (0 user, 1 system)."""
    return {p: (u + s if part is None else (u, s)[part]) for p, (u, s) in tree.items()}


def run_delay_tree(pid: int) -> Dict[int, float]:
    """{pid: seconds spent runnable but waiting for a CPU} of a process and its descendants
    (/proc/PID/schedstat, second field: the scheduler's run delay of the main thread; the
    daemons are single-threaded processes)."""
    out: Dict[int, float] = {}
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/schedstat") as fh:
                out[p] = int(fh.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return out


def tree_delta(before: Dict[int, float], after: Dict[int, float]) -> Dict[int, float]:
    """CPU seconds per process between two ``cpu_tree`` reads (a process new since
    ``before`` counts from 0)."""
    return {p: round(s - before.get(p, 0.0), 3) for p, s in after.items()}


def hwm_tree_mb(pid: int) -> float:
    """Sum of the peak resident sets (VmHWM) of a process and its descendants, MB."""
    return sum(hwm_mb(p) for p in descendants(pid))


def pss_tree_mb(pid: int) -> float:
    """Sum of the proportional set sizes (Pss, /proc/PID/smaps_rollup) of a process and its
    descendants now, MB: pages the workers share with each other (e.g. what the parent set up
    before forking) are counted once in all, unlike a sum of their RSS."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) in MB; 0.0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def socket_inodes(pid: int) -> Set[str]:
    """Inodes of the sockets a process holds open."""
    out = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def raw_socket_drops(pid: int) -> Optional[int]:
    """Packets the kernel dropped on the process's AF_INET raw sockets (``drops`` column of
    /proc/PID/net/raw); None if it holds none (e.g. a packet socket, whose drops /proc
    does not show)."""
    try:
        mine = socket_inodes(pid)
        lines = Path(f"/proc/{pid}/net/raw").read_text().splitlines()[1:]
    except OSError:
        return None
    found, drops = False, 0
    for line in lines:
        parts = line.split()
        if len(parts) >= 13 and parts[9] in mine:
            found = True
            drops += int(parts[-1])
    return drops if found else None


def tcp_states(pid: int) -> List[Tuple[int, int, str]]:
    """(local port, remote port, state hex) of every TCP socket in the process's namespace."""
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        out.append((int(parts[1].split(":")[1], 16), int(parts[2].split(":")[1], 16), parts[3]))
    return out


def listens(pid: int, port: int = CHANNEL_PORT, count: int = 1) -> bool:
    """Something in the process's namespace listens on every port of ``port``..+count-1."""
    want = set(range(port, port + count))
    return want <= {lp for lp, _, st in tcp_states(pid) if st == "0A"}


def connected_to(pid: int, port: int = CHANNEL_PORT, count: int = 1, ports: int = 1) -> bool:
    """At least ``count`` established connections to ports ``port``..+ports-1 in the
    process's namespace (``--workers N``: one channel connection per tcpcopy worker)."""
    hits = [rp for _, rp, st in tcp_states(pid) if st == "01" and port <= rp < port + ports]
    return len(hits) >= count


def descendants(pid: int) -> List[int]:
    """The process and all its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return out


def pin(pids: Iterable[int], cpus: Set[int]) -> List[int]:
    """Pin every thread of the given processes to ``cpus``; the pids pinned."""
    done = []
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:
                continue
        done.append(pid)
    return done
