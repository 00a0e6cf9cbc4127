"""intercept's entry point: flags, help/version, then one daemon or ``--workers M`` of them.

Exit codes: 0 clean exit (SIGTERM/SIGINT), 1 runtime failure, 2 usage error (one line naming
the flag). Every daemon's sockets are opened here, as the caller, before ``-d`` detaches (a
set-up error still reaches the terminal). ``--workers M``: worker j listens on ``-p`` + j and
captures the responses to fake ports ``% M == j``; the M daemons are forked and looked after
by ``engine.workers.intercept``, whose process keeps the pid file and writes the merged stats."""

from __future__ import annotations

import sys
from typing import List, Optional

from engine import __version__
from engine.daemon import daemonize
from engine.intercept.daemon import InterceptDaemon, SetupError
from engine.options.intercept import USAGE, UsageError, parse_args
from engine.stats import print_out
from engine.workers.intercept import run_workers, worker_options


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
        daemons: List[InterceptDaemon] = []
        try:
            for j in range(opts.workers):
                daemons.append(InterceptDaemon(worker_options(opts, j)))
        except SetupError as exc:
            for d in daemons:
                d.discard()
            print(f"intercept: {exc}", file=sys.stderr)
            return 1
        return run_workers(opts, daemons)
    try:
        daemon = InterceptDaemon(opts)       # opens sockets as the caller (errors seen here)
    except SetupError as exc:
        print(f"intercept: {exc}", file=sys.stderr)
        return 1
    if opts.daemon:
        daemonize(workdir=None)     # --stats-file may be relative to the start directory
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
