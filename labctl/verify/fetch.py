"""`labctl verify`: fetch the new part of every access log and the engine stats, run the ledger.

Acting module, kept thin: the parsing is `labctl.verify.logparse`, the comparison
`labctl.verify.ledger`.

Which part of a log is read:
- with a mark (byte offset + inode recorded by `mark_logs` at the end of `up`, saved in the
  local lab state): exactly the bytes written since, following a rotation into `<log>.1`;
- otherwise by time (`--since-up`: since `up` finished; `--window`: the last N seconds): the file
  is read backwards in growing chunks (`tail -c +OFFSET`) until a record older than the start
  is seen — never the whole file unless the window reaches back to its start.
A `Watch` keeps the end offset of every log and reads only what was appended since.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from labctl.errors import LabctlError, RemoteError, UsageError
from labctl.hosts import journal as jr
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch
from labctl.transport.pool import HostPool
from labctl.verify import baseline as vb
from labctl.verify import ledger as L
from labctl.verify import logparse as lp
from labctl.verify import selection as vs
from labctl.verify import targets as vt
from labctl.verify.hoststate import (
    CONNTRACK,
    STALE_AFTER,
    daemon_stats,
    daemons_and,
    fetch_conntrack,
    fetch_daemons,
    parse_conntrack,
)

__all__ = ["CONNTRACK", "STALE_AFTER", "Fetched", "LogMark", "Marks", "Scope", "Watch",
           "daemon_stats", "fetch_conntrack", "fetch_daemons", "fetch_log", "load_marks",
           "mark_logs", "resolve_scope", "run_verify", "run_verify_targets", "save_marks"]

MARKS_NAME = "log-marks.json"
FIRST_CHUNK = 1 << 20
MAX_CHUNK = 1 << 30
Clock = Callable[[], float]


@dataclass(frozen=True)
class LogMark:
    """Where a log ended at a moment: byte offset and inode on its host."""

    host: str
    path: str
    offset: int
    inode: Optional[int]


@dataclass
class Marks:
    """Log ends and conntrack counts recorded when `up` finished (local lab state)."""

    lab: str
    taken_at: float
    logs: list[LogMark] = field(default_factory=list)
    conntrack: dict[str, int] = field(default_factory=dict)
    #: The engine daemons' counters at the same moment (labctl.verify.baseline).
    engine: vb.Baseline = field(default_factory=dict)

    def find(self, host: str, path: str) -> Optional[LogMark]:
        return next((m for m in self.logs if m.host == host and m.path == path), None)


@dataclass
class Fetched:
    """What one read of one log produced, and where the next read starts."""

    host: str
    path: str
    result: lp.ParseResult
    end: LogMark
    bytes_read: int


# ---------------------------------------------------------------- remote reads
def _stat_argv(path: str) -> list[str]:
    return ["stat", "-c", "%n %s %i", path, path + ".1"]


def _parse_stat(res: Result, path: str) -> tuple[lp.FileState, Optional[lp.FileState]]:
    found: dict[str, lp.FileState] = {}
    for line in res.stdout.splitlines():
        name, size, inode = line.rsplit(" ", 2)
        found[name] = lp.FileState(name, int(size), int(inode))
    if path not in found:
        raise RemoteError(f"cannot read access log {path}: {res.stderr.strip() or 'missing'}",
                          hint="check logs.*.path in the inventory and that nginx writes it",
                          host=res.host)
    return found[path], found.get(path + ".1")


def _read_once(t: Transport, spec: HostSpec, path: str, start: int) -> bytes:
    res = t.run(["tail", "-c", f"+{start + 1}", path], timeout=300)
    if not res.ok:
        raise RemoteError(f"cannot read {path} from byte {start}: {res.stderr.strip()}",
                          host=t.host)
    return res.stdout.encode("utf-8", "surrogateescape")


def _read_from(t: Transport, spec: HostSpec, path: str, start: int,
               size: Optional[int] = None) -> bytes:
    """Bytes from `start` to the end (at least to `size`, the length `stat` saw).

    A transport may hand back a short read (observed: SSH output cut at a channel window when
    the exit status arrives first); resume from where it stopped until `size` is reached."""
    data = _read_once(t, spec, path, start)
    want = 0 if size is None else size - start
    for _ in range(64):
        if len(data) >= want:
            break
        more = _read_once(t, spec, path, start + len(data))
        if not more:
            break
        data += more
    return data


def fetch_log(t: Transport, spec: HostSpec, path: str, fmt: lp.LogFormat,
              since: Optional[LogMark], not_before: Optional[float]) -> Fetched:
    """The records written after `since` (a mark), or else those at/after `not_before`."""
    current, rotated = _parse_stat(t.run(_stat_argv(path)), path)
    if since is not None:
        return _fetch_after_mark(t, spec, path, fmt, since, current, rotated)
    if not_before is None:
        raise UsageError("verify needs a start: a mark from `up`, --since-up or --window")
    return _fetch_by_time(t, spec, path, fmt, current, not_before, rotated)


def _fetch_after_mark(t: Transport, spec: HostSpec, path: str, fmt: lp.LogFormat,
                      since: LogMark, current: lp.FileState,
                      rotated: Optional[lp.FileState]) -> Fetched:
    result, end, total = lp.ParseResult(), since.offset, 0
    sizes = {current.path: current.size, **({rotated.path: rotated.size} if rotated else {})}
    for read in lp.plan_reads(since.offset, current, rotated, since.inode):
        data = _read_from(t, spec, read.path, read.start, sizes.get(read.path))
        chunk = lp.complete_prefix(data)
        total += len(chunk)
        result.extend(lp.parse_text(chunk.decode(errors="replace"), fmt, f"{t.host}:{read.path}"))
        if read.path == path:
            end = read.start + len(chunk)
    return Fetched(t.host, path, result, LogMark(t.host, path, end, current.inode), total)


def _fetch_by_time(t: Transport, spec: HostSpec, path: str, fmt: lp.LogFormat,
                   current: lp.FileState, not_before: float,
                   rotated: Optional[lp.FileState] = None) -> Fetched:
    """Read backwards until a record older than `not_before`; when the whole file is newer,
    the log was rotated since: the older records are in `<log>.1`, read it the same way."""
    chunk_size = FIRST_CHUNK
    while True:
        begin = max(0, current.size - chunk_size)
        data = _read_from(t, spec, path, begin, current.size)
        if begin > 0:  # the first line is cut: start after it
            cut = data.find(b"\n") + 1
            data, begin = data[cut:], begin + cut
        chunk = lp.complete_prefix(data)
        result = lp.parse_text(chunk.decode(errors="replace"), fmt, f"{t.host}:{path}")
        times = [r.time for r in result.records if r.time is not None]
        reached = bool(times) and min(times) < not_before
        if begin == 0 or reached or chunk_size >= MAX_CHUNK:
            break
        chunk_size *= 8
    result.records = lp.filter_time(result.records, not_before, None)
    end = LogMark(t.host, path, begin + len(chunk), current.inode)
    if begin == 0 and not reached and rotated is not None:
        older = _fetch_by_time(t, spec, rotated.path, fmt, rotated, not_before)
        older.result.extend(result)
        return Fetched(t.host, path, older.result, end, older.bytes_read + len(chunk))
    return Fetched(t.host, path, result, end, len(chunk))


# ---------------------------------------------------------------- marks (taken at `up`)


def mark_logs(inv: Inventory, pool: HostPool, now: Clock = time.time,
              then: Optional[Callable[[HostSpec, Transport], None]] = None) -> Marks:
    """Record where every access log ends and the conntrack counts. Call at the end of `up`.
    `then`: run on each host right after its marks were taken (whatever they gave), in the
    same task: `up` releases its lock there instead of in a phase of its own."""
    marks = Marks(inv.lab, now())
    roles = dict((spec.name, role) for role, spec in _log_hosts(inv))
    taken = marks.taken_at

    def one(spec: HostSpec, t: Transport) -> tuple[Optional[LogMark], Optional[int],
                                                   list[L.DaemonStats]]:
        try:
            return marks_of(spec, t)
        finally:
            if then is not None:
                then(spec, t)

    def marks_of(spec: HostSpec, t: Transport) -> tuple[Optional[LogMark], Optional[int],
                                                        list[L.DaemonStats]]:
        mark, count, path = None, None, inv.log_for(spec).path if spec.name in roles else ""
        argvs = [_stat_argv(path), ["cat", *CONNTRACK]] if path else []
        try:         # the daemons' counters (a failure costs only the engine baseline), with
            engines, got = daemons_and(t, inv, spec, taken, argvs)  # the log's end and the
        except (LabctlError, OSError):                               # conntrack count
            engines, got = [], None
        if path:
            got = got or run_batch(t, argvs) or [t.run(a) for a in argvs]
            current, _ = _parse_stat(got[0], path)
            mark, count = LogMark(spec.name, path, current.size, current.inode), \
                parse_conntrack(got[1])[0]
        return mark, count, engines

    found: list[L.DaemonStats] = []
    for name, outcome in pool.each(one, phase="marks").items():
        mark, count, engines = outcome.unwrap()
        if mark is not None:
            marks.logs.append(mark)
        if count is not None:
            marks.conntrack[name] = count
        found += engines
    marks.engine = vb.snapshot(found)
    return marks


def save_marks(marks: Marks, root: Optional[Path] = None) -> Path:
    path = jr.local_lab_dir(marks.lab, root) / MARKS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(marks), indent=1), encoding="utf-8")
    return path


def load_marks(lab: str, root: Optional[Path] = None) -> Optional[Marks]:
    path = jr.local_lab_dir(lab, root) / MARKS_NAME
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Marks(raw["lab"], float(raw["taken_at"]),
                     [LogMark(**m) for m in raw.get("logs", [])],
                     {k: int(v) for k, v in raw.get("conntrack", {}).items()},
                     vb.load(raw.get("engine")))
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: unreadable log marks: {exc}",
                         hint="delete the file and use --since-up or --window") from exc


# ---------------------------------------------------------------- one verify run


@dataclass(frozen=True)
class Scope:
    """What to compare: everything since the marks, since a time, or a sliding window."""

    marks: Optional[Marks] = None
    since: Optional[float] = None
    window: Optional[float] = None
    #: when the command started (epoch s): a window counts its N seconds back from there, not
    #: from when the logs are read after labctl's own start-up (None: from the read)
    anchor: Optional[float] = None

    def start(self, now: float) -> Optional[float]:
        if self.window is not None:
            return (now if self.anchor is None else min(now, self.anchor)) - self.window
        return self.since


def _log_hosts(inv: Inventory) -> list[tuple[str, HostSpec]]:
    return [("online", h) for h in inv.hosts.online] + [("target", t) for t in inv.targets]


class Watch:
    """Repeated verifies that read only what each log gained since the previous read.

    `only`: the name of the one target to compare (`--target`); None: every target."""

    def __init__(self, inv: Inventory, pool: HostPool, scope: Scope, clock: Clock = time.time,
                 only: Optional[str] = None):
        if only is not None and not inv.is_target(only):
            raise UsageError(f"--target {only}: no such target in the inventory",
                             hint="targets: " + ", ".join(t.name for t in inv.targets))
        self.inv, self.pool, self.scope, self.clock = inv, pool, scope, clock
        self.targets = [t for t in inv.targets if only is None or t.name == only]
        self.cursors: dict[tuple[str, str], LogMark] = {}
        self.records: dict[tuple[str, str], list[lp.LogRecord]] = {}
        self.malformed: dict[str, int] = {}
        self.thresholds = L.Thresholds(ratio_tolerance=inv.verify.ratio_tolerance,
                                       max_leaks=inv.verify.max_leaks)

    def refresh(self) -> L.LedgerReport:
        """The ledger of the (first) target: the single-target verify."""
        return self.refresh_targets().targets[0].report

    def refresh_targets(self) -> vt.TargetsReport:
        """One ledger per compared target (inventory order)."""
        now = self.clock()
        start = self.scope.start(now)
        if self.scope.anchor is not None:      # the first read only: --watch slides from there
            self.scope = replace(self.scope, anchor=None)
        outcomes = self.pool.each(lambda spec, t: self._fetch_host(spec, t, start),
                                  hosts=[h.name for h in self._log_specs()])
        for outcome in outcomes.values():
            outcome.unwrap()
        daemons, conntrack = self._engine_and_conntrack(now)
        notes: list[str] = []
        if self.scope.marks is not None and self.scope.marks.engine:
            daemons = vb.relative(daemons, self.scope.marks.engine, self.scope.marks.taken_at)
        elif any(d.counters for d in daemons):
            notes.append("engine counters cover each daemon's whole run, not only the "
                         "compared span (no counter snapshot for it)")
        inv = self.inv
        online = {h.name: self.records.get((h.name, inv.log_for(h).path), [])
                  for h in inv.hosts.online}
        window = (start, now) if start is not None and self.scope.marks is None else None
        if self.scope.window is not None and start is not None:
            window = (start, now)
            self._prune(start - self.thresholds.max_lag)
        inp = L.LedgerInput(
            online=online, target=[], sample_percent=self.inv.engine.sample_percent,
            multiplier=self.inv.engine.multiplier, window=window,
            allowed_sources=self._allowed(), daemons=daemons,
            conntrack=conntrack, malformed=dict(self.malformed),
            port_map={s.port: s.target_port for s in self.inv.services}, notes=notes,
            selection=vs.for_inventory(self.inv),
            target_ports=sorted({s.target_port for s in self.inv.services}))
        return vt.build_all(inp, [
            vt.TargetInput(t.name, inv.target_role(t), str(t.address),
                           self.records.get((t.name, inv.log_for(t).path), []))
            for t in self.targets], self.thresholds)

    def _log_specs(self) -> list[HostSpec]:
        return [*self.inv.hosts.online, *self.targets]

    def _fetch_host(self, spec: HostSpec, t: Transport, start: Optional[float]) -> None:
        for host in self._log_specs():
            if host.name != spec.name:
                continue
            log = self.inv.log_for(host)
            key = (spec.name, log.path)
            since = self.cursors.get(key) or (
                self.scope.marks.find(spec.name, log.path) if self.scope.marks else None)
            got = fetch_log(t, spec, log.path, lp.LogFormat(log.format), since, start)
            self.cursors[key] = got.end
            self.records.setdefault(key, []).extend(got.result.records)
            source = f"{spec.name}:{log.path}"
            self.malformed[source] = self.malformed.get(source, 0) + got.result.malformed

    def _prune(self, before: float) -> None:
        for key, recs in self.records.items():
            self.records[key] = [r for r in recs if r.time is None or r.time >= before]

    def _allowed(self) -> Sequence[str]:
        """Where copies come from: the `-c` pool (two-server default: the online hosts)."""
        if self.inv.clients.pool:
            return [str(n) for n in self.inv.clients.pool_networks()]
        return [f"{h.address}/32" for h in self.inv.hosts.online]

    def _engine_and_conntrack(self, now: float
                              ) -> tuple[list[L.DaemonStats], list[L.Conntrack]]:
        at_up = self.scope.marks.conntrack if self.scope.marks else {}

        def one(spec: HostSpec, t: Transport) -> tuple[list[L.DaemonStats], L.Conntrack]:
            count, cmax = fetch_conntrack(t, spec)
            return (fetch_daemons(t, self.inv, spec, now),
                    L.Conntrack(spec.name, count, cmax, at_up.get(spec.name)))

        daemons: list[L.DaemonStats] = []
        conntrack: list[L.Conntrack] = []
        for name, outcome in self.pool.each(one).items():
            if outcome.ok and outcome.value is not None:
                daemons.extend(outcome.value[0])
                if name in {h.name for h in self._log_specs()}:
                    conntrack.append(outcome.value[1])
            else:
                daemons.append(L.DaemonStats(name, "engine", "unreachable", {},
                                             detail=str(outcome.error)))
        return daemons, conntrack


def resolve_scope(inv: Inventory, since_up: bool, window: Optional[float],
                  root: Optional[Path] = None, anchor: Optional[float] = None) -> Scope:
    """--window wins (its N seconds end at ``anchor``, when the command started, if known);
    else the marks from `up` if recorded; else the time `up` finished."""
    if window is not None:
        return Scope(window=window, anchor=anchor)
    marks = load_marks(inv.lab, root)
    if marks is not None:
        return Scope(marks=marks)
    record = jr.load_record(inv.lab, root)
    if record is None or record.state != "up":
        raise UsageError(f"lab {inv.lab!r} has no record of a finished `labctl up` here",
                         hint="run `labctl up` first, or give --window 60s")
    # Logs often have whole-second times ($time_iso8601): compare at that resolution.
    return Scope(since=float(math.floor(record.updated_at)))


def run_verify(inv: Inventory, pool: HostPool, scope: Scope,
               clock: Clock = time.time) -> L.LedgerReport:
    """One verify: fetch, compare, judge (the first target's ledger)."""
    return Watch(inv, pool, scope, clock).refresh()


def run_verify_targets(inv: Inventory, pool: HostPool, scope: Scope, clock: Clock = time.time,
                       only: Optional[str] = None) -> vt.TargetsReport:
    """One verify of every target (or `only` that one): a ledger and verdict each."""
    return Watch(inv, pool, scope, clock, only).refresh_targets()
