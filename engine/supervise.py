"""`python3 labctl-engine.pyz supervise [flags] -- CMD ARGS...`: keep one daemon running.

The engine's own small supervisor for hosts without systemd (labctl's `engine.supervise`, the
"hot backup"): it runs CMD as its child and starts it again whenever it exits, after a back-off
of ``--backoff-min`` seconds that doubles at each restart up to ``--backoff-max`` and starts over
once a child ran ``--stable-after`` seconds. It writes its own pid to ``--pid-file`` and, after
every start and exit, a small JSON ``--state-file`` (written atomically)::

    {"tool": "supervise", "pid", "child_pid", "state": "running|backoff|stopped",
     "restarts", "last_exit", "last_exit_at", "last_start_at", "started_at", "updated_at",
     "backoff"}

SIGTERM/SIGINT: forwarded to the child; the supervisor waits up to ``--stop-timeout`` seconds
for it (then SIGKILL), writes the final state and exits 0. SIGHUP is forwarded (the daemons
reload ``--netem-file`` on it). The child's stdout/stderr go through a pipe into ``--log-file``
together with the supervisor's own lines; past ``--max-log-bytes`` that file becomes ``.1`` (one
old file kept), so a copy that runs for days never fills the disk.

Not the workers of one daemon (``--workers N``, engine/workers): this watches a whole daemon.
Standard library only; Python >= 3.9 and PyPy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, Any, Dict, List, Optional

from engine.stats import format_log_line

POLL = 0.1
DEFAULT_MAX_LOG = 4 << 20


class Backoff:
    """The wait before the next start (pure): ``low`` doubling to ``high``; a child that ran
    ``stable`` seconds or longer resets it."""

    def __init__(self, low: float = 0.5, high: float = 30.0, stable: float = 60.0) -> None:
        self.low, self.high, self.stable = low, high, stable
        self.current = low

    def after_exit(self, ran: float) -> float:
        """The delay before restarting a child that ran ``ran`` seconds."""
        if ran >= self.stable:
            self.current = self.low
        delay = self.current
        self.current = min(self.high, self.current * 2)
        return delay


class BoundedLog:
    """An append-only log file rotated to ``PATH.1`` once it would grow past ``max_bytes``.
    Never raises on write errors (a log must not stop the supervision)."""

    def __init__(self, path: Optional[str], max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fh: Optional[IO[bytes]] = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open, closed in close())
            self._size = os.fstat(self._fh.fileno()).st_size

    def write(self, data: bytes) -> None:
        if self._fh is None:
            if self.path is None:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(data.decode("utf-8", "replace"))
            return
        with contextlib.suppress(OSError, ValueError):
            if self.path and self._size and self._size + len(data) > self.max_bytes:
                self._fh.close()
                self._fh = None
                os.replace(self.path, self.path + ".1")
                self._open()
                if self._fh is None:
                    return
            self._fh.write(data)
            self._fh.flush()
            self._size += len(data)

    def line(self, level: str, msg: str) -> None:
        self.write((format_log_line(level, f"[supervise] {msg}", time.time()) + "\n")
                   .encode("utf-8", "replace"))

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


def describe_exit(returncode: int) -> str:
    """``exit 1`` / ``signal 9 (SIGKILL)`` (pure)."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
    return f"signal {-returncode} ({name})"


def write_json(path: Optional[str], doc: Dict[str, Any]) -> None:
    """Atomically (temp file + rename); errors ignored (the state file is advisory)."""
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, sort_keys=True)
        os.replace(tmp, path)


class Supervisor:
    """The loop: start the child, pump its output into the log, restart it after it exits,
    stop when asked (``request_stop``, from the signal handlers)."""

    def __init__(self, command: List[str], log: BoundedLog, backoff: Backoff,
                 state_file: Optional[str] = None, stop_timeout: float = 10.0) -> None:
        self.command = command
        self.log = log
        self.backoff = backoff
        self.state_file = state_file
        self.stop_timeout = stop_timeout
        self.stopping = False
        self.pending: List[int] = []      # signals to forward to the child
        self.child: Optional[subprocess.Popen[bytes]] = None
        self.pipe: Optional[int] = None
        self.state: Dict[str, Any] = {
            "tool": "supervise", "pid": os.getpid(), "child_pid": None, "state": "starting",
            "restarts": 0, "last_exit": None, "last_exit_at": None, "last_start_at": None,
            "started_at": time.time(), "updated_at": time.time(), "backoff": backoff.low,
            "command": command}

    # -- signals ------------------------------------------------------------------------
    def request_stop(self, signum: int) -> None:
        self.stopping = True
        self.pending.append(signum)

    def forward(self, signum: int) -> None:
        self.pending.append(signum)

    def _deliver(self) -> None:
        while self.pending:
            signum = self.pending.pop(0)
            if self.child is not None and self.child.poll() is None:
                with contextlib.suppress(OSError):
                    self.child.send_signal(signum)

    # -- state --------------------------------------------------------------------------
    def save(self, **changes: Any) -> None:
        self.state.update(changes, updated_at=time.time())
        write_json(self.state_file, self.state)

    # -- child --------------------------------------------------------------------------
    def start_child(self) -> bool:
        rfd, wfd = os.pipe()
        try:
            self.child = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=wfd,
                                          stderr=wfd, close_fds=True)
        except OSError as exc:
            os.close(rfd)
            os.close(wfd)
            self.child = None
            self.log.line("error", f"cannot start {self.command[0]}: {exc}")
            return False
        os.close(wfd)
        self.pipe = rfd
        now = time.time()
        self.log.line("notice", f"started pid {self.child.pid}: {' '.join(self.command)}")
        self.save(state="running", child_pid=self.child.pid, last_start_at=now)
        return True

    def pump(self, timeout: float) -> None:
        """Copy what the child wrote into the log; wait at most ``timeout`` seconds."""
        if self.pipe is None:
            time.sleep(timeout)
            return
        try:
            ready, _, _ = select.select([self.pipe], [], [], timeout)
        except (OSError, ValueError):
            ready = []
        if not ready:
            return
        try:
            data = os.read(self.pipe, 65536)
        except OSError:
            data = b""
        if data:
            self.log.write(data)
        else:                           # EOF: the child (and whatever it forked) closed it
            os.close(self.pipe)
            self.pipe = None

    def drain(self) -> None:
        """After the child exited: copy what is left (not waiting for an EOF that a process it
        forked may hold back)."""
        while self.pipe is not None:
            try:
                ready, _, _ = select.select([self.pipe], [], [], 0)
            except (OSError, ValueError):
                ready = []
            if not ready:
                os.close(self.pipe)
                self.pipe = None
                return
            self.pump(0)

    def wait_child(self) -> int:
        """Pump output until the child exits (forwarding signals); its return code."""
        assert self.child is not None
        kill_at: Optional[float] = None
        while True:
            self._deliver()
            code = self.child.poll()
            if code is not None:
                self.drain()
                return code
            if self.stopping and kill_at is None:
                kill_at = time.monotonic() + self.stop_timeout
            if kill_at is not None and time.monotonic() >= kill_at:
                self.log.line("warn", f"pid {self.child.pid} still running "
                                      f"{self.stop_timeout:g}s after the stop signal: SIGKILL")
                with contextlib.suppress(OSError):
                    self.child.kill()
                kill_at = time.monotonic() + 3600.0
            self.pump(POLL)

    def pause(self, delay: float) -> None:
        """The back-off, cut short by a stop request."""
        end = time.monotonic() + delay
        while not self.stopping and time.monotonic() < end:
            time.sleep(max(0.0, min(POLL, end - time.monotonic())))

    def run(self) -> int:
        self.log.line("notice", f"supervising: {' '.join(self.command)}")
        while not self.stopping:
            started = time.monotonic()
            if self.start_child():
                if self.stopping:               # asked to stop while it was being started
                    self.pending.append(signal.SIGTERM)
                code = self.wait_child()
                how = describe_exit(code)
                self.child = None
            else:
                how = "could not start"
            ran = time.monotonic() - started
            if self.stopping:
                self.log.line("notice", f"child {how} on request")
                self.save(state="stopped", child_pid=None, last_exit=how,
                          last_exit_at=time.time())
                break
            delay = self.backoff.after_exit(ran)
            self.log.line("warn", f"child {how} after {ran:.1f}s; restarting in {delay:g}s")
            self.save(state="backoff", child_pid=None, last_exit=how, last_exit_at=time.time(),
                      backoff=delay)
            self.pause(delay)
            if self.stopping:
                self.save(state="stopped")
                break
            self.state["restarts"] += 1
        self.log.line("notice", f"stopped after {self.state['restarts']} restart(s)")
        return 0


def write_pid(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def remove_own_pid(path: Optional[str]) -> None:
    """Remove ``path`` if it still names this process (a successor may have replaced it)."""
    if not path:
        return
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as fh:
            if int(fh.read().strip() or 0) != os.getpid():
                return
        os.unlink(path)


def _positive(flag: str, kind: Any) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: must be more than 0")
        return value
    return parse


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="supervise",
                                description="keep a daemon running: restart it with back-off")
    p.add_argument("--pid-file", default=None, help="the supervisor's own pid")
    p.add_argument("--state-file", default=None, help="JSON: restarts, last exit, child pid")
    p.add_argument("--log-file", default=None, help="the child's stdout/stderr and our lines")
    p.add_argument("--max-log-bytes", type=_positive("--max-log-bytes", int),
                   default=DEFAULT_MAX_LOG, help="rotate the log to .1 past this size")
    p.add_argument("--backoff-min", type=_positive("--backoff-min", float), default=0.5)
    p.add_argument("--backoff-max", type=_positive("--backoff-max", float), default=30.0)
    p.add_argument("--stable-after", type=_positive("--stable-after", float), default=60.0,
                   help="a child that ran this long resets the back-off")
    p.add_argument("--stop-timeout", type=_positive("--stop-timeout", float), default=10.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        p.error("no command given (supervise [flags] -- CMD ARGS...)")
    if args.backoff_max < args.backoff_min:
        p.error(f"--backoff-max {args.backoff_max:g}: less than --backoff-min")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    log = BoundedLog(args.log_file, args.max_log_bytes)
    sup = Supervisor(args.command, log, Backoff(args.backoff_min, args.backoff_max,
                                                args.stable_after),
                     args.state_file, args.stop_timeout)
    signal.signal(signal.SIGTERM, lambda signum, frame: sup.request_stop(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: sup.request_stop(signum))
    signal.signal(signal.SIGHUP, lambda signum, frame: sup.forward(signum))
    if args.pid_file:
        write_pid(args.pid_file)
    try:
        return sup.run()
    finally:
        remove_own_pid(args.pid_file)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
