"""intercept daemon: process wiring only (flags: ``engine.options.intercept``, the I/O loop:
``engine.intercept_loop``). Exit codes: 0 clean exit (SIGTERM/SIGINT), 1 runtime failure,
2 usage error (one line naming the flag). ``--workers M``: M daemons (worker j listens on
``-p`` + j and captures the responses to fake ports ``% M == j``) are set up here, then forked
(``engine.workers``); this process keeps the pid file and writes the merged stats file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import List, Optional

from engine import __version__
from engine.daemon import daemonize, write_pidfile
from engine.intercept_loop import InterceptDaemon, SetupError
from engine.options.intercept import USAGE, InterceptOptions, UsageError, parse_args
from engine.stats import Logger, print_out
from engine.workers import supervise, worker_path
from engine.workers.process import StatsSpec

__all__ = ["USAGE", "InterceptOptions", "UsageError", "main", "parse_args"]


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(args)
    except UsageError as exc:
        print(f"intercept: {exc}", file=sys.stderr)
        return 2
    if opts is None:
        print_out(f"intercept version:{__version__}" if "-v" in args or "--version" in args
                  else USAGE)
        return 0
    if opts.workers > 1:
        return run_workers(opts)
    try:
        daemon = InterceptDaemon(opts)       # opens sockets as the caller (errors seen here)
    except SetupError as exc:
        print(f"intercept: {exc}", file=sys.stderr)
        return 1
    if opts.daemon:
        daemonize(workdir=None)     # --stats-file may be relative to the start directory
    return daemon.run()


def worker_options(opts: InterceptOptions, index: int) -> InterceptOptions:
    """Worker ``index``'s options: its port, its stats file, no pid file."""
    return dataclasses.replace(
        opts, worker=index, port=opts.port + index, pid_file=None, daemon=False,
        stats_file=worker_path(opts.stats_file, index) if opts.stats_file else None)


def run_workers(opts: InterceptOptions) -> int:
    """``--workers M``: set up every worker's sockets (errors on stderr, exit 1), detach with
    ``-d``, then fork them and look after them."""
    daemons: List[InterceptDaemon] = []
    try:
        for j in range(opts.workers):
            daemons.append(InterceptDaemon(worker_options(opts, j)))
    except SetupError as exc:
        for d in daemons:
            d.discard()
        print(f"intercept: {exc}", file=sys.stderr)
        return 1
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
                                   opts.stats_interval), after_fork)
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


if __name__ == "__main__":
    sys.exit(main())
