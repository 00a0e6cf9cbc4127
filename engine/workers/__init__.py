"""``--workers N`` of both daemons: the parent process and the merged stats file.

- ``engine.workers.process``: ``supervise(...)`` forks the workers, forwards SIGTERM/SIGINT/
  SIGHUP to them, merges their stats files on a timer, and returns when all have exited (1 if
  any failed or died unexpectedly; then the others are stopped). A worker gets SIGTERM if its
  parent dies (``PR_SET_PDEATHSIG``).
- ``engine.workers.tcpcopy`` / ``engine.workers.intercept``: each daemon's worker options
  (ports, stats file, fanout group) and its parent's start (``run_workers``).
- ``engine.workers.merge``: ``merge_stats(tool, docs, ...)``: one stats document from the
  workers' (``<stats>.w<k>``), same schema as a single process's plus ``workers`` and
  ``per_worker``.
"""

from engine.workers.merge import merge_stats, worker_path
from engine.workers.process import supervise

__all__ = ["merge_stats", "supervise", "worker_path"]
