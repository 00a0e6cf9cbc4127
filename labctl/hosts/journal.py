"""The per-host journal of an `up`: every change, written on the host BEFORE it is made.

Shape (JSON, read also by `engine/rollback.py` on the host, so keep it plain):
`{"version", "lab", "host", "run_id", "state", "created_at", "updated_at", "deadman": {...}|null,
  "daemons": [{...}], "entries": [{"seq", "step", "kind", "description", "apply", "undo",
  "probe", "guarded", "status", "reason", "planned_at", "applied_at", "undone_at",
  "snapshot": {"routes", "iptables"}}]}`.
Entry status goes planned -> applied | noop | failed -> undone. The journal lives at
`<state_dir>/<lab>/<host>/journal.json` on the host; a copy sits in the local state directory.
The dataclasses and transitions here are pure; `read_remote`/`write_remote` are the only I/O.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional, Sequence

from labctl.errors import RemoteError, UsageError
from labctl.model import Change
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch
from labctl.transport.textfile import write_text

VERSION = 1
JOURNAL_NAME = "journal.json"
#: Statuses whose change may be in place (planned: labctl may have died between write and run).
MAY_BE_IN_PLACE = ("applied", "failed", "planned")
SNAPSHOT_ARGVS = {"routes": ("ip", "route", "show", "table", "all"), "iptables": ("iptables-save",)}

Clock = Callable[[], float]


@dataclass
class Snapshot:
    routes: str = ""
    iptables: str = ""


@dataclass
class Entry:
    seq: int
    step: str
    kind: str
    description: str
    apply: list[list[str]]
    undo: list[list[str]]
    probe: Optional[list[str]] = None
    guarded: bool = False
    status: str = "planned"
    reason: str = ""
    planned_at: float = 0.0
    applied_at: Optional[float] = None
    undone_at: Optional[float] = None
    snapshot: Snapshot = field(default_factory=Snapshot)

    @property
    def may_be_in_place(self) -> bool:
        return self.status in MAY_BE_IN_PLACE


@dataclass
class DeadmanRecord:
    mechanism: str  # "systemd" | "detached"
    after: float
    armed_at: float
    confirm_file: str
    pid_file: str = ""
    unit: str = ""
    confirmed_at: Optional[float] = None


@dataclass
class DaemonRecord:
    name: str  # "intercept" | "tcpcopy"
    argv: list[str]
    pid_file: str
    stats_file: str
    log_file: str
    unit: str = ""
    runtime: str = "python3"  # the interpreter (journals of older labctl: python3)
    workers: int = 1
    #: engine.supervise: "engine" (the engine's supervisor, its pidfile and state file),
    #: "systemd" (the unit restarts it), "" (not supervised; journals of older labctl)
    supervisor: str = ""
    supervisor_pid_file: str = ""
    supervisor_state_file: str = ""
    supervisor_pid: Optional[int] = None
    pid: Optional[int] = None
    started_at: Optional[float] = None
    stopped_at: Optional[float] = None
    final_stats: Optional[dict[str, Any]] = None


@dataclass
class Journal:
    lab: str
    host: str
    run_id: str
    state: str = "applying"  # applying | up | rolling_back | rolled_back | failed | down
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = VERSION
    rolled_back_by: str = ""
    deadman: Optional[DeadmanRecord] = None
    daemons: list[DaemonRecord] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    # -- pure transitions -------------------------------------------------------------------
    def plan_entry(self, change: Change, snapshot: Snapshot, now: float) -> Entry:
        """Append `change` as a planned entry (to be written before the change runs)."""
        entry = Entry(
            seq=len(self.entries) + 1,
            step=change.step,
            kind=change.kind.value,
            description=change.description,
            apply=[list(a) for a in change.apply],
            undo=[list(u) for u in change.undo],
            probe=list(change.probe) if change.probe else None,
            guarded=change.guarded,
            planned_at=now,
            snapshot=snapshot,
        )
        self.entries.append(entry)
        self.updated_at = now
        return entry

    def mark(self, entry: Entry, status: str, now: float, reason: str = "") -> None:
        entry.status = status
        if reason:
            entry.reason = reason
        if status in ("applied", "noop", "failed"):
            entry.applied_at = now
        if status == "undone":
            entry.undone_at = now
        self.updated_at = now

    def in_place(self) -> list[Entry]:
        """Entries that may still be in place, newest first (the undo order)."""
        return [e for e in reversed(self.entries) if e.may_be_in_place]

    @property
    def is_clean(self) -> bool:
        """Nothing left to undo and no daemon left running."""
        return not self.in_place() and all(d.stopped_at for d in self.daemons)

    # -- serialisation ----------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "journal") -> Journal:
        try:
            raw = json.loads(text)
            entries = [
                Entry(**{**e, "snapshot": Snapshot(**(e.get("snapshot") or {}))})
                for e in raw.pop("entries", [])
            ]
            deadman = raw.pop("deadman", None)
            daemons = [DaemonRecord(**d) for d in raw.pop("daemons", [])]
            for key in [k for k in raw if k not in cls.__dataclass_fields__]:
                raw.pop(key)  # newer writers may add keys; ignore them
            journal = cls(**raw, entries=entries, daemons=daemons,
                          deadman=DeadmanRecord(**deadman) if deadman else None)
        except (ValueError, TypeError, AttributeError) as exc:
            raise RemoteError(f"{where}: not a readable labctl journal: {exc}") from exc
        return journal


def new_journal(lab: str, host: str, run_id: str, now: Optional[float] = None) -> Journal:
    t = time.time() if now is None else now
    return Journal(lab=lab, host=host, run_id=run_id, created_at=t, updated_at=t)


# -- paths ------------------------------------------------------------------------------------
def host_dir(state_dir: str, lab: str, host: str) -> str:
    """`<state_dir>/<lab>/<host>`: per host, because hosts may share one filesystem."""
    return str(PurePosixPath(state_dir) / lab / host)


def journal_path(hdir: str) -> str:
    return str(PurePosixPath(hdir) / JOURNAL_NAME)


# -- remote I/O -------------------------------------------------------------------------------
def take_snapshot(transport: Transport, sudo: bool = True) -> Snapshot:
    """`ip route show table all` + `iptables-save` (read-only); failures recorded as text."""
    return snapshot_and(transport, [], sudo)[0]


def snapshot_and(transport: Transport, extra: Sequence[Sequence[str]], sudo: bool = True
                 ) -> tuple[Snapshot, list[Result]]:
    """The snapshot and the results of `extra` (read-only argvs, e.g. a change's probe), all
    in one round trip where the host runs batches."""
    argvs = [*SNAPSHOT_ARGVS.values(), *[list(a) for a in extra]]
    results = run_batch(transport, argvs, sudo=sudo)  # one round trip
    if results is None:
        results = [transport.run(list(argv), sudo=sudo) for argv in argvs]
    return snapshot_of(results), results[len(SNAPSHOT_ARGVS):]


def snapshot_of(results: Sequence[Result]) -> Snapshot:
    """The snapshot from the results of SNAPSHOT_ARGVS (in that order; failures as text)."""
    out = {}
    for key, argv, res in zip(SNAPSHOT_ARGVS, SNAPSHOT_ARGVS.values(), results):
        out[key] = res.stdout if res.ok else f"# {argv[0]} failed ({res.exit_code}): {res.stderr}"
    return Snapshot(**out)


def write_remote(transport: Transport, path: str, journal: Journal, sudo: bool = True) -> None:
    """Atomic on the host, one round trip: the JSON to a temp name next to it (mode 600), then
    `mv -f` over it (labctl.transport.textfile)."""
    write_text(transport, path, journal.to_json(), sudo=sudo).check()


def read_remote(transport: Transport, path: str, sudo: bool = True,
                read: Optional[Result] = None) -> Optional[Journal]:
    """The host's journal, or None when there is none (`read`: its `cat` already run)."""
    res = read if read is not None else transport.run(["cat", path], sudo=sudo)
    if not res.ok:
        if "No such file" in res.stderr or (res.exit_code == 1 and not res.stdout):
            return None
        res.check()
    return Journal.from_json(res.stdout, where=f"{transport.host}:{path}")


# -- local copy -------------------------------------------------------------------------------
def local_state_root() -> Path:
    """`$LABCTL_STATE_DIR`, else `~/.local/state/labctl`."""
    env = os.environ.get("LABCTL_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "labctl"


def local_lab_dir(lab: str, root: Optional[Path] = None) -> Path:
    return (root or local_state_root()) / lab


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def save_local(journal: Journal, root: Optional[Path] = None) -> Path:
    """Keep a copy of the journal on the operator's machine, named by its lab and host (which
    must be plain names: a journal read from a host must not choose where it is written)."""
    for what, name in (("lab", journal.lab), ("host", journal.host)):
        if not LOCAL_NAME.match(name) or ".." in name:
            raise ValueError(f"journal {what} {name!r} is not a plain name")
    path = local_lab_dir(journal.lab, root) / f"{journal.host}.journal.json"
    _atomic_write(path, journal.to_json())
    return path


def load_local(lab: str, host: str, root: Optional[Path] = None) -> Optional[Journal]:
    path = local_lab_dir(lab, root) / f"{host}.journal.json"
    if not path.exists():
        return None
    return Journal.from_json(path.read_text(encoding="utf-8"), where=str(path))


@dataclass
class LabRecord:
    """What the operator's machine remembers about a lab: enough to reconnect without flags."""

    lab: str
    inventory_path: str
    inventory_text: str
    hosts: list[str]
    state: str = "up"  # applying | up | failed | down
    run_id: str = ""
    updated_at: float = 0.0


def save_record(record: LabRecord, root: Optional[Path] = None) -> Path:
    path = local_lab_dir(record.lab, root) / "lab.json"
    _atomic_write(path, json.dumps(asdict(record), indent=1, sort_keys=True))
    return path


def load_record(lab: str, root: Optional[Path] = None) -> Optional[LabRecord]:
    path = local_lab_dir(lab, root) / "lab.json"
    if not path.exists():
        return None
    try:
        return LabRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: unreadable local lab state: {exc}",
                         hint="delete it, or pass the inventory explicitly") from exc


def known_labs(root: Optional[Path] = None) -> list[str]:
    base = root or local_state_root()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "lab.json").exists())
