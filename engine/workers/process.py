"""The parent of ``--workers N``: fork, forward signals, merge stats, wait (Linux, stdlib).

``supervise(count, run_worker, log, stats)`` forks ``count`` processes; worker k runs
``run_worker(k)`` and exits with its return value (never returning into the caller: its
``finally`` blocks, e.g. the pid file's removal, are the parent's). The parent then only:

- forwards SIGTERM/SIGINT (stop) and SIGHUP (``--netem-file`` reload) to every worker, and
  SIGKILLs the workers still alive ``KILL_GRACE`` s after a stop;
- every ``stats.interval`` s reads the workers' stats files (``<stats>.w<k>``) and writes the
  merged one (``engine.workers.merge``), once every worker has written its first; a file
  whose pid is not this parent's worker k (left by a run that was killed: a supervisor's
  restart finds them) counts as not written yet; rotates the shared log
  (``Logger.rotate_shared``);
- reaps the workers: one that exits while nobody asked it to (or exits non-zero / on another
  signal) is logged by index, pid and status, and the others are stopped.

It returns when every worker has exited: 0, or 1 if any worker failed (the merged stats
file then says ``state: failed``, so ``labctl status`` tells a failed run from a stopped
one). A worker whose parent dies gets SIGTERM (``PR_SET_PDEATHSIG``), so a killed parent
leaves no worker behind.

``supervise(..., with_line=True)``: a worker calls ``start_line()`` to get its ``StartLine``
(None when there is none), ``arrive()``s when it is ready (tcpcopy: its sockets joined their
fanout groups) and polls ``passed()``: true once every worker has arrived (the parent then
closes the "go" pipe). Until the last tcpcopy worker joins, the kernel spreads the flows over
fewer sockets; nobody reads a packet before the line, and what was queued is dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import time
from functools import partial
from typing import Any, Callable, Dict, NamedTuple, NoReturn, Optional

from engine.loop import Loop
from engine.stats import Logger, write_stats
from engine.workers.merge import merge_stats, worker_path

PR_SET_PDEATHSIG = 1
KILL_GRACE = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StatsSpec(NamedTuple):
    """Where the merged stats go: tool name, version, the merged file (None: no stats file)."""

    tool: str
    version: str
    path: Optional[str]
    interval: float
    metrics: Optional[str] = None       # --metrics-file: the merged counters, Prometheus text


class StartLine:
    """Two pipes: workers write one byte each to "ready"; the parent closes "go" (every
    worker sees it readable, at EOF) once all have."""

    def __init__(self) -> None:
        self.ready_r, self.ready_w = os.pipe()
        self.go_r, self.go_w = os.pipe()
        self.arrived = 0

    def worker_side(self) -> None:
        os.close(self.ready_r)
        os.close(self.go_w)

    def parent_side(self) -> None:
        os.close(self.ready_w)
        os.close(self.go_r)

    def arrive(self) -> None:
        """(worker) This worker is ready."""
        with contextlib.suppress(OSError):
            os.write(self.ready_w, b"r")

    def passed(self, timeout: float = 0.0) -> bool:
        """(worker) Every worker has arrived (waits at most ``timeout``)."""
        return bool(select.select([self.go_r], [], [], timeout)[0])


_LINE: Optional[StartLine] = None


def start_line() -> Optional[StartLine]:
    """In a worker of ``supervise(..., start_line=True)``: its start line, else None."""
    return _LINE


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _child(index: int, parent: int, run_worker: Callable[[int], int],
           line: Optional[StartLine]) -> NoReturn:
    global _LINE
    code = 1
    try:
        die_with_parent()
        if line is not None:
            line.worker_side()
            _LINE = line
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)   # until the worker's loop handles it
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if os.getppid() != parent:      # the parent died before PDEATHSIG was set
            os._exit(1)
        code = run_worker(index)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:     # a worker must never return into the parent's code
        with contextlib.suppress(Exception):    # the traceback, without importing traceback
            sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _read(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _ours(doc: Optional[Dict[str, Any]], pid: Optional[int]) -> Optional[Dict[str, Any]]:
    """``doc`` if worker ``pid`` wrote it, else None (a stale file of an earlier run)."""
    return doc if doc is not None and doc.get("pid") == pid else None


def describe_status(status: int) -> str:
    """``exited with code N`` / ``killed by signal NAME`` from a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


class _Parent:
    def __init__(self, pids: Dict[int, int], count: int, log: Logger, stats: StatsSpec,
                 line: Optional[StartLine]) -> None:
        self.pids, self.count, self.log, self.stats = pids, count, log, stats
        self.worker_pid = {k: pid for pid, k in pids.items()}   # kept after the reap
        self.line = line
        self.loop = Loop()
        self.started_at = time.time()
        self.stopping = False
        self.failed = False
        self._kill_timer = False

    def run(self) -> int:
        loop = self.loop
        loop.add_signal_handler(signal.SIGTERM, partial(self.stop, signal.SIGTERM))
        loop.add_signal_handler(signal.SIGINT, partial(self.stop, signal.SIGINT))
        loop.add_signal_handler(signal.SIGHUP, self._forward_hup)
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        if self.line is not None:
            loop.add_reader(self.line.ready_r, self._on_ready)
        self._tick()
        if self.pids:
            loop.run()
        self.merge("failed" if self.failed else "exited")
        if self.line is not None:
            os.close(self.line.ready_r)
            os.close(self.line.go_w)
        loop.close()
        return 1 if self.failed else 0

    def _on_ready(self) -> None:
        line = self.line
        assert line is not None
        try:
            got = os.read(line.ready_r, 256)
        except (BlockingIOError, InterruptedError):
            return
        line.arrived += len(got)
        if line.arrived >= self.count or not got:       # all there (or all gone): go
            self.loop.remove_reader(line.ready_r)
            os.close(line.ready_r)
            os.close(line.go_w)
            self.line = None
            if got:
                self.log.notice(f"all {self.count} workers ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if not self.stopping:
            self.log.notice(f"stopping {len(self.pids)} workers (signal {sig})")
        self.stopping = True
        self._signal_all(sig)
        if not self._kill_timer:
            self._kill_timer = True
            self.loop.call_later(KILL_GRACE, self._kill_rest)

    def _forward_hup(self) -> None:
        self._signal_all(signal.SIGHUP)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _kill_rest(self) -> None:
        for pid, k in list(self.pids.items()):
            self.log.error(f"worker {k} (pid {pid}) still running {KILL_GRACE:g} s after the "
                           "stop; killed")
        self._signal_all(signal.SIGKILL)

    def reap(self) -> None:
        for pid, k in list(self.pids.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.pids[pid]
            how = describe_status(status)
            asked = self.stopping and (
                (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
                or (os.WIFSIGNALED(status) and os.WTERMSIG(status) in STOP_SIGNALS))
            if asked:
                self.log.notice(f"worker {k} (pid {pid}) {how}")
                continue
            if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                self.failed = True
            if self.stopping:
                self.log.error(f"worker {k} (pid {pid}) {how}")
            else:
                self.log.error(f"worker {k} (pid {pid}) {how} unexpectedly; stopping the "
                               "other workers")
                self.stop(signal.SIGTERM)
        if not self.pids:
            self.loop.stop()

    def _tick(self) -> None:
        self.reap()
        self.merge("running")
        self.log.rotate_shared()
        if self.pids:
            self.loop.call_later(max(self.stats.interval, 0.05), self._tick)

    def merge(self, state: str) -> None:
        spec = self.stats
        if not spec.path:
            return
        docs = [_ours(_read(worker_path(spec.path, k)), self.worker_pid.get(k))
                for k in range(self.count)]
        if state == "running" and any(d is None for d in docs):
            return              # not every worker has started yet
        doc = merge_stats(spec.tool, spec.version, os.getpid(), self.started_at, time.time(),
                          state, [d or {"state": "missing"} for d in docs])
        try:
            write_stats(spec.path, doc, spec.metrics)
        except OSError as exc:
            self.log.error(f"stats file {spec.path}", exc.errno)


def supervise(count: int, run_worker: Callable[[int], int], log: Logger, stats: StatsSpec,
              after_fork: Optional[Callable[[], None]] = None, with_line: bool = False) -> int:
    """Fork ``count`` workers running ``run_worker(k)``; in this process, look after them
    until all have exited (see the module doc). ``after_fork`` runs in the parent once all
    are forked (e.g. to close the sockets only the workers use); ``with_line``: the workers
    get a ``start_line()``. Returns 0 or 1."""
    parent = os.getpid()
    line = StartLine() if with_line else None
    pids: Dict[int, int] = {}
    for k in range(count):
        try:
            pid = os.fork()
        except OSError as exc:
            log.error(f"fork of worker {k}", exc.errno)
            for started in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(started, signal.SIGTERM)
            for started in pids:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(started, 0)
            return 1
        if pid == 0:
            _child(k, parent, run_worker, line)
        pids[pid] = k
        log.notice(f"worker {k} started (pid {pid})")
    if line is not None:
        line.parent_side()
    if after_fork is not None:
        after_fork()
    return _Parent(pids, count, log, stats, line).run()
