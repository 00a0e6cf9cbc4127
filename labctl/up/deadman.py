"""The dead-man rollback timer: armed ON the host right before its first guarded change
(only hosts with a guarded change get one; see `min_after` for its shortest length).

Two mechanisms, both detached from the SSH session that armed them:
- systemd hosts: `systemd-run --on-active=<T>` starts `labctl-engine.pyz rollback --after 0`
  (a transient timer; `systemctl stop <unit>.timer` cancels it);
- elsewhere: `python3 labctl-engine.pyz rollback --detach --after <T>` (double fork + setsid;
  the arming command returns once the pidfile exists).
Either way the rollback does nothing if the confirm file exists when it fires. labctl confirms
over a NEW SSH connection (the old one proving nothing about whether a fresh login still works):
it creates the confirm file and stops the timer.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Callable, Optional

from labctl.errors import LabctlError, RemoteError
from labctl.hosts.journal import DeadmanRecord, journal_path
from labctl.hosts.supervision import HOST_PYTHON
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch, run_chain

DEFAULT_AFTER = 120.0
#: Seconds beyond the guard timeout that a timer must last: it is armed after the change is
#: journaled, and its probe, apply and liveness check must all be done before it can fire.
MARGIN = 10.0


def min_after(guard_timeout: float) -> float:
    """The shortest timer that cannot fire before a guarded change is applied (pure)."""
    return guard_timeout + MARGIN


def unit_name(lab: str) -> str:
    return f"labctl-{lab}-deadman"


def paths(hdir: str) -> dict[str, str]:
    base = PurePosixPath(hdir)
    return {
        "journal": journal_path(hdir),
        "confirm_file": str(base / "deadman.confirmed"),
        "pid_file": str(base / "deadman.pid"),
        "log_file": str(base / "deadman.log"),
    }


def arm_argv(pyz: str, hdir: str, lab: str, after: float, systemd: bool) -> list[str]:
    """The argv that arms the timer (pure; tests assert on it)."""
    p = paths(hdir)
    rollback = [HOST_PYTHON, pyz, "rollback", "--journal", p["journal"],
                "--confirm-file", p["confirm_file"], "--log-file", p["log_file"]]
    if systemd:
        return ["systemd-run", "--unit", unit_name(lab), f"--on-active={max(1, round(after))}s",
                "--timer-property=AccuracySec=1s", *rollback, "--after", "0"]
    return [*rollback, "--after", f"{after:g}", "--pid-file", p["pid_file"], "--detach"]


def arm(
    transport: Transport, pyz: str, hdir: str, lab: str, after: float, systemd: bool,
    sudo: bool = True, now: Callable[[], float] = time.time,
) -> DeadmanRecord:
    """Arm the timer; returns the record to keep in the journal."""
    p = paths(hdir)
    clear, start = ["rm", "-f", p["confirm_file"]], arm_argv(pyz, hdir, lab, after, systemd)
    both = run_batch(transport, [clear, start], sudo=sudo)   # one round trip where it can
    if both is None:
        transport.run(clear, sudo=sudo).check()
        transport.run(start, sudo=sudo).check()
    else:   # (should the `rm` fail, the timer it armed finds a confirm file and does nothing)
        both[0].check()
        both[1].check()
    return DeadmanRecord(
        mechanism="systemd" if systemd else "detached", after=after, armed_at=now(),
        confirm_file=p["confirm_file"], pid_file="" if systemd else p["pid_file"],
        unit=unit_name(lab) if systemd else "",
    )


def timer_pid(transport: Transport, record: DeadmanRecord, sudo: bool = True,
              read: Optional[Result] = None) -> Optional[int]:
    """The pid of a still-running detached timer (checked against /proc/PID/cmdline);
    `read`: the `cat` of its pid file, already run."""
    if not record.pid_file:
        return None
    res = read if read is not None else transport.run(["cat", record.pid_file], sudo=sudo)
    if not res.ok or not res.stdout.strip().isdigit():
        return None
    pid = int(res.stdout.strip())
    cmd = transport.run(["cat", f"/proc/{pid}/cmdline"], sudo=sudo)
    return pid if cmd.ok and "rollback" in cmd.stdout else None


def is_armed(transport: Transport, record: Optional[DeadmanRecord], sudo: bool = True) -> bool:
    if record is None or record.confirmed_at:
        return False
    if record.mechanism == "systemd":
        res = transport.run(["systemctl", "is-active", f"{record.unit}.timer"], sudo=sudo)
        return res.ok
    return timer_pid(transport, record, sudo) is not None


def cancel(
    transport: Transport, record: DeadmanRecord, sudo: bool = True, wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> None:
    """Create the confirm file and stop the timer; waits until a detached timer has exited
    (one already rolling back finishes first, so the journal is final when this returns)."""
    touch = ["touch", record.confirm_file]
    if record.mechanism == "systemd":
        transport.run(touch, sudo=sudo).check()
        for suffix in ("timer", "service"):
            transport.run(["systemctl", "stop", f"{record.unit}.{suffix}"], sudo=sudo)
        return
    # the confirm file, then (only once it is there) the timer's pid file: one round trip
    got = run_chain(transport, [touch, ["cat", record.pid_file]], sudo=sudo) \
        if record.pid_file else None
    if got is None:
        transport.run(touch, sudo=sudo).check()
    else:
        got[0].check()
    pid = timer_pid(transport, record, sudo, got[1] if got is not None else None)
    if pid is None:
        return
    transport.run(["kill", "-TERM", str(pid)], sudo=sudo)
    deadline = clock() + wait
    pause = 0.02     # a timer that was only waiting exits at once: look again soon, then less
    while timer_pid(transport, record, sudo) is not None:
        if clock() > deadline:
            raise RemoteError(
                f"dead-man timer pid {pid} did not exit within {wait:g}s",
                hint=f"inspect {record.pid_file} and the deadman.log next to it",
                host=transport.host,
            )
        sleep(pause)
        pause = min(pause * 2, 0.2)


def confirm_fresh(open_fresh: Callable[[], Transport], record: DeadmanRecord, host: str
                  ) -> DeadmanRecord:
    """`confirm` over a NEW connection, `open_fresh()` (connected here, closed after): proves
    a fresh SSH login still works after the host's guarded changes. A failure names the host
    (it is no cut of the run's own connection: the run rolls back over that one as usual)."""
    fresh = open_fresh()
    try:
        connect = getattr(fresh, "connect", None)
        if connect is not None:
            connect()
        return confirm(fresh, record)
    except LabctlError as exc:
        raise RemoteError(f"cannot confirm over a new SSH connection: {exc.message}",
                          hint=exc.hint, host=host) from exc
    finally:
        fresh.close()


def confirm(
    fresh: Transport, record: DeadmanRecord, sudo: bool = True,
    now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
) -> DeadmanRecord:
    """Confirm over `fresh` (a NEW connection): cancels the rollback. Returns the updated record."""
    cancel(fresh, record, sudo, sleep=sleep)
    record.confirmed_at = now()
    return record
