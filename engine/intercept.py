"""intercept daemon: process wiring only (flags: ``engine.options.intercept``, the I/O loop:
``engine.intercept_loop``). Exit codes: 0 clean exit (SIGTERM/SIGINT), 1 runtime failure,
2 usage error (one line naming the flag). ``--workers M``: M daemons (worker j listens on
``-p`` + j and captures the responses to fake ports ``% M == j``) are set up here, then forked
(``engine.workers.intercept``); this process keeps the pid file and writes the merged stats file."""

from __future__ import annotations

import sys
from typing import List, Optional

from engine import __version__
from engine.daemon import daemonize
from engine.intercept_loop import InterceptDaemon, SetupError
from engine.options.intercept import USAGE, InterceptOptions, UsageError, parse_args
from engine.stats import print_out
from engine.workers.intercept import run_workers

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


if __name__ == "__main__":
    sys.exit(main())
