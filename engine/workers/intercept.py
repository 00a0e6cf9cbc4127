"""intercept's side of ``--workers M``: each worker's options and the parent's start.

Worker j listens on ``-p`` + j, captures only the responses to fake ports ``% M == j`` (the
daemon narrows its filter with ``bpf.residue_filter``), writes ``<stats>.w<j>`` and no pid
file. All M daemons are set up (``engine.intercept.cli``) before ``-d`` detaches (errors still
reach the terminal), then forked; the parent keeps the pid file and writes the merged stats
file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Optional, Protocol, Sequence

from engine import __version__
from engine.daemon import daemonize, write_pidfile
from engine.options.intercept import InterceptOptions
from engine.stats import Logger
from engine.workers.merge import worker_path
from engine.workers.process import StatsSpec, supervise


class WorkerDaemon(Protocol):
    """What this module needs of a set-up intercept daemon (``engine.intercept.daemon``)."""

    def run(self) -> int: ...

    def discard(self) -> None: ...


def worker_options(opts: InterceptOptions, index: int) -> InterceptOptions:
    """Worker ``index``'s options: its port, its stats file, no pid file."""
    return dataclasses.replace(
        opts, worker=index, port=opts.port + index, pid_file=None, daemon=False,
        stats_file=worker_path(opts.stats_file, index) if opts.stats_file else None,
        metrics_file=None)            # the parent writes the merged metrics


def run_workers(opts: InterceptOptions, daemons: Sequence[WorkerDaemon]) -> int:
    """``--workers M``: the M daemons set up (``daemons[j]`` from ``worker_options(opts, j)``),
    detach with ``-d``, then fork them and look after them."""
    if opts.daemon:
        daemonize(workdir=None)
    log = Logger(opts.log_file)
    try:
        if opts.pid_file:
            try:
                write_pidfile(opts.pid_file)
            except OSError as exc:
                log.error(f"-P {opts.pid_file}", exc.errno)
                for d in daemons:
                    d.discard()
                return 1
        log.notice(f"intercept version:{__version__}, {opts.workers} workers on ports "
                   f"{opts.port}-{opts.port + opts.workers - 1}")

        def worker(j: int) -> int:
            for i, d in enumerate(daemons):
                if i != j:
                    d.discard()
            return daemons[j].run()

        def after_fork() -> None:
            for d in daemons:
                d.discard()

        return supervise(opts.workers, worker, log,
                         StatsSpec("intercept", __version__, opts.stats_file,
                                   opts.stats_interval, opts.metrics_file), after_fork)
    finally:
        if opts.pid_file:
            with contextlib.suppress(OSError):
                if _pid_in(opts.pid_file) == os.getpid():
                    os.unlink(opts.pid_file)
        log.close()


def _pid_in(path: str) -> Optional[int]:
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return None

