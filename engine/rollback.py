"""`python3 labctl-engine.pyz rollback ...`: the dead-man timer that runs ON a host.

labctl arms it before its first guarded change (a route, a DROP rule). It sleeps `--after`
seconds; unless the `--confirm-file` exists by then (labctl creates it over a *new* SSH
connection once everything works), it undoes every journal entry that may be in place, newest
first, and marks each one `undone` in the journal. It runs detached from the SSH session
(`--detach`: double fork + setsid, pidfile written before the arming command returns), so a cut
SSH path cannot stop it.

Standard library only; Python >= 3.9. The journal is plain JSON written by labctl.journal:
`{"entries": [{"step", "status", "undo": [[argv...]], "probe": [argv] | null, ...}], ...}`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

#: Entry statuses that may have left something in place (planned: labctl may have died mid-step).
MAY_BE_IN_PLACE = ("applied", "failed", "planned")
POLL = 0.2
UNDO_TIMEOUT = 30.0


def _log(log_file: Optional[str], msg: str) -> None:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    line = f"{stamp} [rollback] {msg}\n"
    if log_file:
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write(line)
    else:
        sys.stderr.write(line)


def load_journal(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError(f"{path}: not a labctl journal (no entries list)")
    return data


def write_journal(path: str, data: Dict[str, Any]) -> None:
    """Atomic: write a temp file next to it, then rename over it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _run(argv: List[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=UNDO_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, b"", str(exc).encode())


def undo_entry(entry: Dict[str, Any]) -> str:
    """Undo one entry; returns the reason recorded in the journal. Never raises."""
    probe = entry.get("probe")
    if probe and _run(list(probe)).returncode != 0:
        if entry.get("status") == "planned":  # maybe cut off between its commands: clear
            for argv in entry.get("undo") or []:  # what its first ones made (failures expected)
                _run(list(argv))
        return "not in place (probe failed), nothing to undo"
    failures = []
    for argv in entry.get("undo") or []:
        res = _run(list(argv))
        if res.returncode == 1 and argv[:1] == ["pkill"]:
            continue        # no such process: the daemon (or its supervisor) already stopped
        if res.returncode != 0:
            tail = (res.stderr or res.stdout or b"").decode("utf-8", "replace").strip()
            failures.append(f"`{' '.join(argv)}` exited {res.returncode}: {tail[-200:]}")
    if failures:
        return "undo by dead-man with errors: " + "; ".join(failures)
    return "undone by dead-man timer"


def roll_back(path: str, log_file: Optional[str] = None, now: Any = time.time) -> int:
    """Undo every entry that may be in place, newest first; returns how many were undone."""
    data = load_journal(path)
    data["state"] = "rolling_back"
    write_journal(path, data)
    count = 0
    for entry in reversed(data["entries"]):
        if entry.get("status") not in MAY_BE_IN_PLACE:
            continue
        reason = undo_entry(entry)
        entry["status"] = "undone"
        entry["reason"] = reason
        entry["undone_at"] = now()
        count += 1
        _log(log_file, "{}: {}".format(entry.get("step"), reason))
        write_journal(path, data)
    data["state"] = "rolled_back"
    data["rolled_back_by"] = "deadman"
    data["updated_at"] = now()
    write_journal(path, data)
    return count


def _detach(pid_file: Optional[str], log_file: Optional[str] = None) -> None:
    """Double fork + setsid; the first parent prints the pid and exits once the pidfile exists.
    In the grandchild stdin is /dev/null and stdout/stderr go to `log_file` (or /dev/null)."""
    rfd, wfd = os.pipe()
    if os.fork() > 0:
        os.close(wfd)
        pid = os.read(rfd, 64).decode().strip()
        print(pid)
        sys.stdout.flush()
        os._exit(0 if pid else 1)
    os.close(rfd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log_file else devnull
    os.dup2(out, 1)
    os.dup2(out, 2)
    if pid_file:
        _write_pid(pid_file)
    os.write(wfd, str(os.getpid()).encode())
    os.close(wfd)


def _write_pid(pid_file: str) -> None:
    tmp = pid_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, pid_file)


class _State:
    __slots__ = ("stop", "undoing")

    def __init__(self) -> None:
        self.undoing = False
        self.stop = False


def _install_handlers(state: _State) -> None:
    """SIGTERM disarms (unless the undo already began: a half-done undo is worse than a
    finished one); SIGHUP is ignored. Installed before the pid is published, so a disarm sent
    right after arming is never lost to the default action."""
    def on_term(signum: int, frame: Any) -> None:
        if not state.undoing:
            state.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def wait_then_roll_back(args: argparse.Namespace, state: Optional[_State] = None) -> int:
    if state is None:
        state = _State()
        _install_handlers(state)
    deadline = time.monotonic() + args.after
    _log(args.log_file, f"armed: {args.after:.1f}s, journal {args.journal}")
    try:
        while True:
            if state.stop:
                _log(args.log_file, "disarmed by SIGTERM")
                return 0
            if args.confirm_file and os.path.exists(args.confirm_file):
                _log(args.log_file, "confirmed; nothing to undo")
                return 0
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(POLL, left))
        state.undoing = True
        _log(args.log_file, "not confirmed in time: rolling back")
        count = roll_back(args.journal, args.log_file)
        _log(args.log_file, f"rolled back {count} entries")
        return 0
    except Exception as exc:  # the timer must report, never die silently
        _log(args.log_file, f"rollback failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if args.pid_file:
            with contextlib.suppress(OSError):
                os.unlink(args.pid_file)


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rollback", description=__doc__.splitlines()[0])
    p.add_argument("--journal", required=True, help="journal.json to roll back")
    p.add_argument("--after", type=float, required=True, help="seconds to wait for confirmation")
    p.add_argument("--confirm-file", default=None, help="its existence cancels the rollback")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--log-file", default=None)
    p.add_argument("--detach", action="store_true", help="detach from the session first")
    p.add_argument("--now", action="store_true", help="roll back immediately, no timer")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.now:
        count = roll_back(args.journal, args.log_file)
        print(f"rolled back {count} entries")
        return 0
    state = _State()
    _install_handlers(state)            # inherited by the detached grandchild
    if args.detach:
        _detach(args.pid_file)
    elif args.pid_file:
        _write_pid(args.pid_file)
    return wait_then_roll_back(args, state)


def spawn_main(argv: List[str]) -> int:
    """`detach [--pid-file P] [--log-file L] [--env NAME=VALUE]... -- CMD ARGS...`: start CMD
    detached from the session (labctl's daemons on hosts without systemd); prints its pid once
    P exists."""
    p = argparse.ArgumentParser(prog="detach")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--log-file", default=None)
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set in CMD's environment (repeatable)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given")
    env = dict(os.environ)
    for item in args.env:
        name, eq, value = item.partition("=")
        if not name or not eq:
            p.error(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    _detach(args.pid_file, args.log_file)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write(f"detach: cannot run {command[0]}: {exc}\n")
        os._exit(127)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
