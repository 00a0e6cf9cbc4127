"""Supervised daemons (`engine.supervise`, the "hot backup"): restarted when they exit.

Two mechanisms, chosen per host like the daemons' own start:
- systemd hosts: the transient unit gets `Restart=on-failure` and `RestartSec` (systemd restarts
  it; `systemctl show -p NRestarts` counts the restarts; `systemctl stop` ends both);
- elsewhere: the engine's own supervisor, `python3 labctl-engine.pyz supervise --pid-file
  <name>.supervisor.pid --state-file <name>.supervisor.json --log-file <name>.supervisor.log
  --max-log-bytes N -- <the daemon's argv>`, started detached. Its state file counts the
  restarts and names the last exit; `down` and the dead-man stop it FIRST (by its pidfile and a
  command line naming its state file), then the daemon.
The argv builders are pure; `supervisor_pid` and `read_state` are the only I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Optional

from engine.pypygc import GC_ENV
from labctl.hosts.journal import DaemonRecord
from labctl.hosts.observe import named_or_mid_exec
from labctl.transport.base import Transport

ENGINE = "engine"
#: The interpreter every host has: the engine's helpers (detach, supervise) and the dead-man's
#: rollback run under it whatever the daemons' runtime, and it is the daemons' default runtime.
HOST_PYTHON = "python3"
SYSTEMD = "systemd"
#: Seconds systemd waits before restarting a unit that exited (the engine's back-off starts
#: at 0.5 s and doubles to 30 s; systemd's is fixed).
RESTART_SEC = 1
#: The supervisor's own log (the daemon's stdout/stderr and its lines), rotated to .1 past this.
MAX_LOG_BYTES = 4 << 20


@dataclass(frozen=True)
class Supervision:
    """What `status` shows of a supervised daemon."""

    mechanism: str  # "engine" | "systemd"
    alive: bool  # the supervisor (or the unit) is active
    restarts: Optional[int]  # None: unknown (state file not readable)
    last_exit: str = ""


def files(hdir: str, name: str) -> dict[str, str]:
    """The engine supervisor's files next to the daemon's: pid, state (JSON), log."""
    base = PurePosixPath(hdir)
    return {"pid": str(base / f"{name}.supervisor.pid"),
            "state": str(base / f"{name}.supervisor.json"),
            "log": str(base / f"{name}.supervisor.log")}


def systemd_properties() -> list[str]:
    """What makes a transient unit restart its daemon (pure)."""
    return ["--property=Restart=on-failure", f"--property=RestartSec={RESTART_SEC}",
            "--property=StartLimitIntervalSec=0"]


def detach_argv(pyz: str, pid_file: str, out_file: str) -> list[str]:
    """The engine's `detach` (a daemon or a supervisor, on hosts without systemd), up to its
    `--`. It runs under `python3` whatever the daemon's runtime (every host has it; it starts
    in a fraction of PyPy's time, and `detach` only forks and execs). The command it runs gets
    `GC_ENV` in its environment: a daemon under PyPy then starts with its small nursery at once
    instead of exec'ing itself again (engine.pypygc; CPython ignores the variables)."""
    env = [a for k, v in sorted(GC_ENV.items()) for a in ("--env", f"{k}={v}")]
    return [HOST_PYTHON, pyz, "detach", "--pid-file", pid_file, "--log-file", out_file, *env,
            "--"]


def systemd_env() -> list[str]:
    """`detach_argv`'s environment for `systemd-run`."""
    return [f"--setenv={k}={v}" for k, v in sorted(GC_ENV.items())]


def engine_argv(pyz: str, hdir: str, name: str, inner: list[str]) -> list[str]:
    """`supervise ... -- <inner>` started detached (the printed pid is the supervisor's); the
    supervisor, a small loop that waits on its child, runs under `python3` too."""
    f = files(hdir, name)
    return [*detach_argv(pyz, f["pid"], f["log"] + ".out"),
            HOST_PYTHON, pyz, "supervise", "--pid-file", f["pid"], "--state-file", f["state"],
            "--log-file", f["log"], "--max-log-bytes", str(MAX_LOG_BYTES), "--", *inner]


def undo_argv(record: DaemonRecord) -> list[str]:
    """The dead-man's stop of the engine supervisor: only the pid in its pidfile AND a process
    whose command line names its state file (pgrep's criteria are ANDed)."""
    literal = "".join("\\" + c if c in ".[]()*+?{}|^$\\" else c
                      for c in record.supervisor_state_file)
    return ["pkill", "-TERM", "-F", record.supervisor_pid_file, "-f", literal]


def supervisor_pid(transport: Transport, record: DaemonRecord, sudo: bool = True) -> Optional[int]:
    """The engine supervisor's pid if it runs and is really this daemon's (its
    /proc/PID/cmdline names `supervise` and its state file)."""
    if record.supervisor != ENGINE or not record.supervisor_pid_file:
        return None
    candidates = [record.supervisor_pid] if record.supervisor_pid else []
    res = transport.run(["cat", record.supervisor_pid_file], sudo=sudo)
    if res.ok and res.stdout.strip().isdigit():
        candidates.insert(0, int(res.stdout.strip()))
    for pid in candidates:
        cmd = transport.run(["cat", f"/proc/{pid}/cmdline"], sudo=sudo)
        named = cmd.ok and "supervise" in cmd.stdout and record.supervisor_state_file in cmd.stdout
        if named_or_mid_exec(transport, pid, cmd, named, sudo):
            return pid
    return None


def read_state(transport: Transport, record: DaemonRecord, sudo: bool = True
               ) -> Optional[dict[str, Any]]:
    res = transport.run(["cat", record.supervisor_state_file], sudo=sudo)
    if not res.ok:
        return None
    try:
        data = json.loads(res.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def restarts_of(state: Optional[dict[str, Any]]) -> Optional[int]:
    value = (state or {}).get("restarts")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def inspect(transport: Transport, record: DaemonRecord, sudo: bool = True
            ) -> Optional[Supervision]:
    """The supervision of a daemon (None: not supervised)."""
    if record.supervisor == ENGINE:
        state = read_state(transport, record, sudo)
        return Supervision(ENGINE, supervisor_pid(transport, record, sudo) is not None,
                           restarts_of(state), str((state or {}).get("last_exit") or ""))
    if record.supervisor == SYSTEMD and record.unit:
        res = transport.run(["systemctl", "show", "-p", "NRestarts", "-p", "ActiveState",
                             "-p", "Result", record.unit], sudo=sudo)
        props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        count = props.get("NRestarts", "")
        return Supervision(SYSTEMD, props.get("ActiveState") in ("active", "activating"),
                           int(count) if count.isdigit() else None, props.get("Result", ""))
    return None
