"""The engine daemons on hosts: start detached, wait until ready, read status, stop gracefully.

Each daemon keeps its pidfile, stats file (JSON, see the brief's contract) and log in the host's
state directory. Started with `systemd-run --unit labctl-<lab>-<name>` where the host runs
systemd, else with the engine's own `detach` (double fork + setsid, stdio to the log file).
Readiness: intercept listens (`ss -Hltn`), tcpcopy reports `intercepts[].connections > 0`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Callable, Optional, Sequence

from labctl.errors import RemoteError
from labctl.hosts import supervision as sv
from labctl.hosts.journal import DaemonRecord
from labctl.hosts.observe import Observed, current_pid, observe, read_stats
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch

#: Counters `status` shows per daemon (the rest stay in the stats file / --json). A counter
#: the daemon does not report is left out (the selection ones exist only with engine.select).
KEY_COUNTERS = {
    "tcpcopy": ("captured", "clt_syn", "sessions_created", "requests_sent", "resp", "sent",
                "send_errors", "send_retried", "kernel_drops", "sessions_shed",
                "sessions_no_synack", "sessions_refused", "target_resets", "synack_retrans",
                "requests_selected",
                "requests_skipped", "sessions_unselected", "streams_unparsable",
                "streams_non_http"),
    "intercept": ("captured", "resp_routed", "resp_unrouted", "frames_sent", "clients_accepted",
                  "clients_rejected_auth", "kernel_drops"),
}


@dataclass
class Poller:
    """Clock and sleep for waiting on conditions (tests pass fakes: no real sleeping). The
    first wait is `interval`; each next one is `backoff` times longer, up to `max_interval`:
    a daemon that is ready at once is seen at once, and a fleet of hosts waiting on slow
    starts does not flood them (and the operator) with checks."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    interval: float = 0.1
    backoff: float = 1.5
    max_interval: float = 0.5

    def until(self, what: str, host: str, timeout: float, check: Callable[[], bool]) -> None:
        deadline = self.clock() + timeout
        wait = self.interval
        while not check():
            if self.clock() >= deadline:
                raise RemoteError(f"timed out after {timeout:g}s waiting for {what}", host=host)
            self.sleep(wait)
            wait = min(wait * self.backoff, max(self.interval, self.max_interval))


@dataclass(frozen=True)
class DaemonSpec:
    """One daemon to run: its name and engine flags (without pid/stats/log files)."""

    name: str  # "intercept" | "tcpcopy"
    args: tuple[str, ...]
    runtime: str = sv.HOST_PYTHON  # the interpreter on the host: "python3" | "pypy3"
    workers: int = 1  # engine workers (their flags are in `args`; kept here for status)
    supervise: bool = False  # engine.supervise: restarted when it exits (labctl.hosts.supervision)


@dataclass
class DaemonStatus:
    name: str
    alive: bool
    pid: Optional[int]
    uptime: Optional[float]
    state: str
    counters: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    runtime: str = sv.HOST_PYTHON  # the interpreter it was started with (from the journal)
    workers: int = 1
    #: every counter of its stats file (`counters` holds the key ones shown in tables), and
    #: when that file was written (for `status --prometheus`)
    all_counters: dict[str, int] = field(default_factory=dict)
    updated_at: Optional[float] = None
    #: engine.supervise: "engine" | "systemd" ("" not supervised), whether the supervisor (or
    #: unit) is active, how often it restarted the daemon and how the daemon last exited
    supervisor: str = ""
    supervisor_alive: bool = False
    restarts: Optional[int] = None
    last_exit: str = ""


def unit_name(lab: str, name: str) -> str:
    return f"labctl-{lab}-{name}"


def files(hdir: str, name: str) -> dict[str, str]:
    """The daemon's files in the host's state directory: pid, stats, log, and `netem` (the
    copy path's conditions, written by a drill's netem fault; see `netem_file`)."""
    base = PurePosixPath(hdir)
    return {k: str(base / f"{name}.{k}") for k in ("pid", "stats", "log", "netem")}


def netem_file(record: DaemonRecord) -> str:
    """The daemon's `--netem-file` (next to its stats file)."""
    return record.stats_file.rsplit(".", 1)[0] + ".netem"


def engine_argv(pyz: str, hdir: str, spec: DaemonSpec) -> list[str]:
    f = files(hdir, spec.name)
    return [spec.runtime, pyz, spec.name, *spec.args, "--pid-file", f["pid"],
            "--stats-file", f["stats"], "--log-file", f["log"], "--netem-file", f["netem"]]


def launch_argv(pyz: str, hdir: str, lab: str, spec: DaemonSpec, systemd: bool) -> list[str]:
    """The argv that starts `spec` detached from the SSH session (pure)."""
    inner = engine_argv(pyz, hdir, spec)
    if systemd:
        restart = sv.systemd_properties() if spec.supervise else []
        return ["systemd-run", "--unit", unit_name(lab, spec.name), "--collect",
                "--property=KillSignal=SIGTERM", "--property=TimeoutStopSec=10", *restart,
                *sv.systemd_env(), *inner]
    if spec.supervise:
        return sv.engine_argv(pyz, hdir, spec.name, inner)
    f = files(hdir, spec.name)
    return [*sv.detach_argv(pyz, f["pid"], f["log"] + ".out"), *inner]


def record_for(pyz: str, hdir: str, lab: str, spec: DaemonSpec, systemd: bool) -> DaemonRecord:
    f = files(hdir, spec.name)
    engine_sv = spec.supervise and not systemd
    sf = sv.files(hdir, spec.name)
    return DaemonRecord(
        name=spec.name, argv=launch_argv(pyz, hdir, lab, spec, systemd), pid_file=f["pid"],
        stats_file=f["stats"], log_file=f["log"], unit=unit_name(lab, spec.name) if systemd else "",
        runtime=spec.runtime, workers=spec.workers,
        supervisor=(sv.SYSTEMD if systemd else sv.ENGINE) if spec.supervise else "",
        supervisor_pid_file=sf["pid"] if engine_sv else "",
        supervisor_state_file=sf["state"] if engine_sv else "",
    )


def undo_argvs(record: DaemonRecord) -> list[list[str]]:
    """What the dead-man runs to stop a daemon (best effort; `down` stops them gracefully)."""
    if record.unit:
        return [["systemctl", "stop", record.unit]]
    first = [sv.undo_argv(record)] if record.supervisor == sv.ENGINE else []  # no restart
    # only the pid in the file AND a process whose command line names this daemon's stats
    # file (pgrep's criteria are ANDed): a pid reused by another process is never signalled
    return [*first,
            ["pkill", "-TERM", "-F", record.pid_file, "-f", ere_literal(record.stats_file)]]


def ere_literal(text: str) -> str:
    """`text` as a POSIX extended regular expression matching itself."""
    return "".join("\\" + c if c in ".[]()*+?{}|^$\\" else c for c in text)


def start(
    transport: Transport, record: DaemonRecord, sudo: bool = True,
    now: Callable[[], float] = time.time,
) -> DaemonRecord:
    """Run the launch argv; the record gets the pid (from the detach output or the pidfile)."""
    argvs = start_argvs(record)
    both = run_batch(transport, argvs, sudo=sudo)   # one round trip where the host can
    if both is None:
        both = [transport.run(argvs[0], sudo=sudo).check(), transport.run(argvs[1], sudo=sudo)]
    return started(record, both, now)


def start_argvs(record: DaemonRecord) -> list[list[str]]:
    """A fresh start: no stats of an earlier run, no conditions a crashed drill left behind
    (and for a supervised one no pid or state of an earlier run); then the launch argv."""
    stale = [record.pid_file, record.supervisor_state_file] if record.supervisor else []
    clean = ["rm", "-f", record.stats_file, netem_file(record), *[f for f in stale if f]]
    return [clean, list(record.argv)]


def started(record: DaemonRecord, results: Sequence[Result],
            now: Callable[[], float] = time.time) -> DaemonRecord:
    """The record of a daemon `start_argvs` started (CommandFailed unless both ran well)."""
    for res in results:
        res.check()
    if len(results) < 2:
        raise RemoteError(f"{record.name} was not started", host=results[0].host
                          if results else None)
    word = results[1].stdout.strip().split()[-1] if results[1].stdout.strip() else ""
    pid = int(word) if word.isdigit() else None
    if record.supervisor == sv.ENGINE:
        record.supervisor_pid = pid  # the daemon's own pid is in its pidfile
    else:
        record.pid = pid
    record.started_at = now()
    return record


def log_tail(transport: Transport, record: DaemonRecord, sudo: bool = True) -> str:
    logs = [record.log_file, record.log_file + ".out"]
    if record.supervisor == sv.ENGINE:
        logs.append(sv.files(str(PurePosixPath(record.pid_file).parent), record.name)["log"])
    res = transport.run(["tail", "-n", "15", *logs], sudo=sudo)
    return res.stdout.strip() if res.ok or res.stdout else "(no log)"


def gone(transport: Transport, record: DaemonRecord, sudo: bool = True,
         seen: Optional[Observed] = None) -> bool:
    """The daemon died during start-up: not running; a supervised one, also when its
    supervisor is gone or already had to restart it (a daemon that cannot start would be
    restarted for ever: `up` fails at once instead, with the log tail). `seen`: a look at it
    already taken in this poll (its pid)."""
    def dead() -> bool:
        return (seen.pid if seen is not None else current_pid(transport, record, sudo)) is None

    if record.supervisor != sv.ENGINE:
        return dead()
    if sv.supervisor_pid(transport, record, sudo) is None:
        return dead()
    return bool(sv.restarts_of(sv.read_state(transport, record, sudo)))


def _died(transport: Transport, record: DaemonRecord, sudo: bool) -> RemoteError:
    return RemoteError(
        f"{record.name} exited during start-up; log tail:\n{log_tail(transport, record, sudo)}",
        hint=f"see {record.log_file} on the host", host=transport.host,
    )


def wait_listening(
    transport: Transport, record: DaemonRecord, port: int, timeout: float = 20.0,
    poller: Optional[Poller] = None, sudo: bool = True,
) -> None:
    """Until something listens on TCP `port` (intercept's channel); fails fast if it died."""
    def check() -> bool:   # one round trip: the listener, the pid file and its cmdline
        seen = observe(transport, record, sudo, stats=False,
                       extra=[["ss", "-Hltn", "sport", "=", f":{port}"]])
        res = seen.extra[0]
        if res.ok and res.stdout.strip():
            return True
        if gone(transport, record, sudo, seen):
            raise _died(transport, record, sudo)
        return False

    (poller or Poller()).until(f"{record.name} to listen on :{port}", transport.host, timeout,
                               check)


def is_connected(stats: Optional[dict[str, Any]]) -> bool:
    """tcpcopy's stats say every intercept channel has a connection (pure)."""
    if not stats:
        return False
    intercepts = stats.get("intercepts") or []
    return bool(intercepts) and all(int(i.get("connections", 0)) > 0 for i in intercepts)


def wait_connected(
    transport: Transport, record: DaemonRecord, timeout: float = 30.0,
    poller: Optional[Poller] = None, sudo: bool = True,
) -> dict[str, Any]:
    """Until tcpcopy's stats file reports a connection to every intercept."""
    seen: dict[str, Any] = {}

    def check() -> bool:   # one round trip: the stats, the pid file and its cmdline
        look = observe(transport, record, sudo)
        if is_connected(look.stats):
            seen.update(look.stats or {})
            return True
        if gone(transport, record, sudo, look):
            raise _died(transport, record, sudo)
        return False

    (poller or Poller()).until("tcpcopy to connect to intercept", transport.host, timeout, check)
    return seen


def stop(
    transport: Transport, record: DaemonRecord, grace: float = 10.0,
    poller: Optional[Poller] = None, sudo: bool = True, now: Callable[[], float] = time.time,
) -> DaemonRecord:
    """SIGTERM (or `systemctl stop`), wait up to `grace`, then SIGKILL; keep the final stats.
    A daemon under the engine's supervisor: the supervisor first (it passes the SIGTERM on and
    exits once the daemon did, so nothing restarts it), then the daemon if it is still there."""
    poller = poller or Poller()
    sup = sv.supervisor_pid(transport, record, sudo)
    if sup is not None:
        transport.run(["kill", "-TERM", str(sup)], sudo=sudo)
        try:
            poller.until(f"{record.name}'s supervisor to exit", transport.host, grace,
                         lambda: sv.supervisor_pid(transport, record, sudo) is None)
        except RemoteError:
            transport.run(["kill", "-KILL", str(sup)], sudo=sudo)
    pid = current_pid(transport, record, sudo)
    if record.unit:
        transport.run(["systemctl", "stop", record.unit], sudo=sudo)
    elif pid is not None:
        transport.run(["kill", "-TERM", str(pid)], sudo=sudo)
    last = Observed(pid, None)
    if pid is not None:
        def exited() -> bool:   # (its stats file read in the same round trip)
            nonlocal last
            last = observe(transport, record, sudo)
            return last.pid is None
        try:
            poller.until(f"{record.name} to exit", transport.host, grace, exited)
        except RemoteError:
            transport.run(["kill", "-KILL", str(pid)], sudo=sudo)
    final = last.stats if last.final else read_stats(transport, record.stats_file, sudo)
    record.final_stats = final or record.final_stats
    record.stopped_at = now()
    return record


def status(
    transport: Transport, record: DaemonRecord, sudo: bool = True,
    now: Callable[[], float] = time.time,
) -> DaemonStatus:
    look = observe(transport, record, sudo)
    pid, stats = look.pid, look.stats or record.final_stats or {}
    st = replace(summarize(record.name, pid, stats, now()), runtime=record.runtime,
                 workers=record.workers)
    seen = sv.inspect(transport, record, sudo)
    if seen is not None:
        st = replace(st, supervisor=seen.mechanism, supervisor_alive=seen.alive,
                     restarts=seen.restarts, last_exit=seen.last_exit,
                     state="restarting" if seen.alive and pid is None else st.state)
    return st


def _last_state(stats: dict[str, Any]) -> str:
    """A daemon that is not running: what it last wrote, or `dead` when it last said it was
    running (it never got to write its exit: kill -9, a crash, the OOM killer)."""
    last = str(stats.get("state", "stopped"))
    return "dead" if last == "running" else last


#: what `status` shows of tcpcopy's `copy_delay_ms` (milliseconds; count is requests)
DELAY_SHOWN = ("count", "last", "p50", "p99", "max")


def summarize(name: str, pid: Optional[int], stats: dict[str, Any], at: float) -> DaemonStatus:
    """Status from a pid (None: not running) and a stats dict (pure)."""
    counters = stats.get("counters") or {}
    started = stats.get("started_at")
    uptime = at - float(started) if pid is not None and isinstance(started, (int, float)) else None
    keys = KEY_COUNTERS.get(name, ())
    shown = ("intercepts", "sessions_active", "listen", "clients", "select", "listens",
             "per_worker")
    extra: dict[str, Any] = {k: stats[k] for k in shown if k in stats}
    delay = stats.get("copy_delay_ms")
    if isinstance(delay, dict):     # tcpcopy: how long copied requests waited (no buckets)
        extra["copy_delay_ms"] = {k: delay[k] for k in DELAY_SHOWN if k in delay}
    return DaemonStatus(
        name=name, alive=pid is not None, pid=pid, uptime=uptime,
        state="running" if pid is not None else _last_state(stats),
        counters={k: int(counters[k]) for k in keys if k in counters}, extra=extra,
        all_counters={k: int(v) for k, v in counters.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)},
        updated_at=float(stats["updated_at"]) if isinstance(stats.get("updated_at"),
                                                            (int, float)) else None,
    )
