"""tcpcopy's side of ``--workers N``: each worker's options and the parent's start.

Worker k gets ``worker=k``, the intercept ports ``P + k % M`` (``--intercept-workers M``), the
stats file ``<stats>.w<k>``, no pid file; it joins its capture sockets to the PACKET_FANOUT
group ``fanout_group(base, ifname)`` of each interface (``base``: the parent's pid)."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Sequence

from engine import __version__
from engine.options import TcpcopyOptions
from engine.rawsock import CaptureSocket, interface_index, join_fanout
from engine.stats import Logger
from engine.workers.merge import worker_path
from engine.workers.process import StatsSpec, start_line, supervise

START_LINE_TIMEOUT = 30.0


def fanout_group(base: int, ifname: Optional[str]) -> int:
    """The PACKET_FANOUT group id of one interface: the parent's pid mixed with the interface
    index (two tcpcopy instances share a group only if their pids agree modulo 65536)."""
    index = interface_index(ifname) if ifname else 0
    return (base ^ (index * 0x9E37)) & 0xFFFF


def join_groups(captures: Sequence[CaptureSocket], base: int) -> None:
    """A worker's capture sockets join their interface's group: the kernel then shares each
    interface's packets among the workers, a flow always to the same one. Raises OSError
    with a message naming the group and interface."""
    for cap in captures:
        group = fanout_group(base, cap.ifname)
        try:
            join_fanout(cap.sock, group)
        except OSError as exc:
            raise OSError(exc.errno, f"PACKET_FANOUT group {group} on {cap.ifname}: "
                                     f"{exc.strerror or exc}") from None


def wait_for_all(captures: Sequence[CaptureSocket], run_once: Callable[[float], None],
                 stopping: Callable[[], bool], clock: Callable[[], float],
                 timeout: float = START_LINE_TIMEOUT) -> bool:
    """After ``join_groups``: wait (running the loop, so a stop and the channel are served)
    until every worker has joined its groups, then drop what the sockets queued meanwhile
    (until the last worker joined, the kernel spread the flows over fewer sockets: a flow
    could have started on one worker and gone on on another). False after ``timeout``."""
    line = start_line()
    if line is None:
        return True
    line.arrive()
    deadline = clock() + timeout
    done = line.passed()
    while not done and not stopping() and clock() < deadline:
        run_once(0.05)
        done = line.passed()
    for cap in captures:
        while cap.recv_frames(256):
            pass
    return done


def worker_options(opts: TcpcopyOptions, index: int, group: int) -> TcpcopyOptions:
    """Worker ``index``'s options: its intercept ports, its stats file, no pid file."""
    m = opts.intercept_workers
    return dataclasses.replace(
        opts, worker=index, fanout_group=group, pid_file=None, daemon=False,
        intercepts=[(host, port + index % m) for host, port in opts.intercepts],
        stats_file=worker_path(opts.stats_file, index) if opts.stats_file else None,
        metrics_file=None)            # the parent writes the merged metrics


def run_workers(opts: TcpcopyOptions, log: Logger,
                run_one: Callable[[TcpcopyOptions, Logger], int]) -> int:
    """``--workers N``: this process becomes the parent of N ``run_one`` loops (each with its
    options and a ``[wK]``-tagged logger on the same file)."""
    group = os.getpid() & 0xFFFF
    log.notice(f"tcpcopy version:{__version__}, {opts.workers} workers, intercept workers "
               f"{opts.intercept_workers}")

    def worker(k: int) -> int:
        wlog = Logger(opts.log_file, tag=f"[w{k}]", follow=True)
        try:
            return run_one(worker_options(opts, k, group), wlog)
        finally:
            wlog.close()

    return supervise(opts.workers, worker, log,
                     StatsSpec("tcpcopy", __version__, opts.stats_file, opts.stats_interval,
                               opts.metrics_file),
                     with_line=True)
