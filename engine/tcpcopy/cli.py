"""tcpcopy's entry point: flags, help/version, the log, ``-d``, the pid file, then one loop or
``--workers N`` of them (``engine.workers``)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Optional, Sequence

from engine import INTERNAL_VERSION, __version__
from engine.daemon import daemonize, write_pidfile
from engine.options import OptionsError, TcpcopyOptions, parse_tcpcopy_args, usage
from engine.stats import Logger, print_out
from engine.tcpcopy.daemon import Tcpcopy
from engine.tcpcopy.setup import StartupError
from engine.workers.tcpcopy import run_workers


def run_one(opts: TcpcopyOptions, log: Logger) -> int:
    """One tcpcopy loop (the process, or one worker of ``--workers``)."""
    try:
        return Tcpcopy(opts, log).run()
    except StartupError as exc:
        log.error(str(exc))
        if not opts.daemon and opts.log_file:
            print(f"tcpcopy: {exc}", file=sys.stderr)
        return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_tcpcopy_args(args)
    except OptionsError as exc:
        print(f"tcpcopy: {exc}", file=sys.stderr)
        return 2
    if opts.show_help:
        print_out(usage())
        return 0
    if opts.show_version:
        print_out(f"tcpcopy {__version__} (labctl engine, internal version {INTERNAL_VERSION})")
        return 0
    try:
        log = Logger(opts.log_file)
    except OSError as exc:
        print(f"tcpcopy: -l {opts.log_file}: {exc.strerror}", file=sys.stderr)
        return 1
    if opts.daemon:
        daemonize()
    if opts.pid_file:
        try:
            write_pidfile(opts.pid_file)
        except OSError as exc:
            log.error(f"-P {opts.pid_file}", exc.errno)
            print(f"tcpcopy: -P {opts.pid_file}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        if opts.workers > 1:
            return run_workers(opts, log, run_one)
        return run_one(opts, log)
    finally:
        if opts.pid_file:
            with contextlib.suppress(OSError):
                os.unlink(opts.pid_file)
        log.close()

