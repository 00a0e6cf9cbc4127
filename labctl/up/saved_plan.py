"""Saved plans: `labctl plan --out FILE` writes one, `labctl up --plan FILE` applies it only if it
is still what `up` would do (pure: no I/O besides reading and writing the file).

A saved plan (format `labctl-plan/2`) holds the inventory's hash, whether `--fix` (and
`--supervise`: `up --plan` then applies both, as the plan was made with them) was given and
every change as a structured record: host, step, kind, description, the exact apply/undo/probe
argvs, whether it is guarded, and for a daemon its engine flags, files and readiness. At
`up --plan`, labctl gathers the facts again and builds the plan anew; when the inventory or any
change differs, the plan is *stale* and `up` refuses before it touches anything, naming each
change and field that differs (Terraform's "saved plan is stale"). Live counters (conntrack
usage, load) are not part of a plan, so they never make it stale. Files of the older format
`labctl-plan/1` (changes as display strings) are refused with a clear message.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import PreflightRefused, UsageError
from labctl.model import Change, Plan
from labctl.plain import plain

FORMAT = "labctl-plan/2"
OLD_FORMATS = ("labctl-plan/1",)
#: The fields of a saved change; `daemon` is null except on DAEMON changes.
CHANGE_FIELDS = ("host", "step", "kind", "description", "apply", "undo", "probe", "guarded",
                 "daemon")

Record = dict[str, Any]


@dataclass(frozen=True)
class SavedPlan:
    path: str
    lab: str
    inventory_sha256: str
    fix: bool
    created_at: float
    changes: tuple[Record, ...]  # one record per change, in execution order
    digest: str
    supervise: bool = False      # made with `plan --supervise` (absent in older files: false)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def change_record(change: Change) -> Record:
    """One change as a JSON-able record (what a saved plan stores and compares)."""
    return {name: plain(getattr(change, name)) for name in CHANGE_FIELDS}


def plan_records(plan: Plan) -> tuple[Record, ...]:
    return tuple(change_record(c) for c in plan.changes)


def _canonical(record: Record) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def digest(inventory_sha: str, fix: bool, records: tuple[Record, ...],
           supervise: bool = False) -> str:
    # supervise only when set: the digests of the files written before it stay valid
    h = hashlib.sha256(f"{FORMAT}\n{inventory_sha}\nfix={int(fix)}\n".encode()
                       + (b"supervise=1\n" if supervise else b""))
    for record in records:
        h.update(_canonical(record).encode("utf-8") + b"\n")
    return h.hexdigest()


def dump(plan: Plan, inventory_path: str, inventory_text: str, fix: bool,
         now: float | None = None, supervise: bool = False) -> dict[str, Any]:
    inv_sha = sha256(inventory_text)
    records = plan_records(plan)
    return {"format": FORMAT, "lab": plan.lab, "inventory": inventory_path,
            "inventory_sha256": inv_sha, "fix": fix, "supervise": supervise,
            "created_at": time.time() if now is None else now,
            "changes": list(records), "digest": digest(inv_sha, fix, records, supervise)}


def save(path: str, plan: Plan, inventory_path: str, inventory_text: str, fix: bool,
         supervise: bool = False) -> str:
    """Write the plan file (atomically); returns its digest."""
    data = dump(plan, inventory_path, inventory_text, fix, supervise=supervise)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(p)
    except OSError as exc:
        raise UsageError(f"cannot write the plan file {path}: {exc.strerror or exc}") from exc
    return str(data["digest"])


def _read_json(path: str) -> Any:
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the plan file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a labctl plan (not UTF-8 text)") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{path}: not a labctl plan (not JSON: {exc})",
                         hint="write one with `labctl plan INVENTORY --out FILE`") from exc


def load(path: str) -> SavedPlan:
    """Read and check a plan file; every problem names the file and the field."""
    data = _read_json(path)
    got = data.get("format") if isinstance(data, dict) else type(data).__name__
    if got in OLD_FORMATS:
        raise UsageError(f"{path}: written by an older labctl (format {got!r}; this labctl "
                         f"reads {FORMAT!r}, which records each change and daemon as fields)",
                         hint="write it again with `labctl plan INVENTORY --out FILE`")
    if not isinstance(data, dict) or got != FORMAT:
        raise UsageError(f"{path}: not a labctl plan (format {got!r}, expected {FORMAT!r})",
                         hint="write one with `labctl plan INVENTORY --out FILE`")
    fields: dict[str, type | tuple[type, ...]] = {
        "lab": str, "inventory_sha256": str, "fix": bool, "created_at": (int, float),
        "changes": list, "digest": str}
    for name, typ in fields.items():
        if not isinstance(data.get(name), typ):
            raise UsageError(f"{path}: field {name!r} is missing or of the wrong type")
    supervise = data.get("supervise", False)
    if not isinstance(supervise, bool):
        raise UsageError(f"{path}: field 'supervise' must be true or false")
    changes = tuple(data["changes"])
    for i, rec in enumerate(changes):
        if not isinstance(rec, dict) or set(rec) != set(CHANGE_FIELDS):
            raise UsageError(f"{path}: field 'changes[{i}]' must be an object with the keys "
                             f"{', '.join(CHANGE_FIELDS)}")
    if digest(data["inventory_sha256"], data["fix"], changes, supervise) != data["digest"]:
        raise UsageError(f"{path}: the plan was edited after it was written (digest mismatch)",
                         hint="write a new one with `labctl plan INVENTORY --out FILE`")
    return SavedPlan(path, data["lab"], data["inventory_sha256"], data["fix"],
                     float(data["created_at"]), changes, data["digest"], supervise)


# -- staleness --------------------------------------------------------------------------------
def _key(record: Record) -> tuple[str, str]:
    return (str(record.get("host")), str(record.get("step")))


def _label(record: Record) -> str:
    return f"[{record.get('host')}] {record.get('step')}"


def _words(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [json.dumps(value)]


def _argv_diff(old: Any, new: Any) -> str:
    """`-n 1` -> `-n 2` style: the words removed and added between two argvs."""
    a, b = _words(old), _words(new)
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            parts.append(f"removed `{shlex.join(a[i1:i2])}`")
        if op in ("replace", "insert"):
            parts.append(f"added `{shlex.join(b[j1:j2])}`")
    return ", ".join(parts)


def _field_diffs(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted names of the fields that differ, each with what changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for name in sorted(set(old) | set(new)):
            out += _field_diffs(old.get(name), new.get(name), f"{prefix}.{name}" if prefix
                                else name)
        return out
    if old == new:
        return []
    if prefix in ("daemon.args", "probe"):
        return [f"{prefix}: {_argv_diff(old, new)}"]
    return [f"{prefix}: {json.dumps(old)} -> {json.dumps(new)}"]


def differences(saved: SavedPlan, lab: str, inventory_text: str, plan: Plan) -> list[str]:
    """Why the saved plan is not what `up` would do now ([] = still current), naming each
    change (host and step) and field that differs."""
    out: list[str] = []
    if saved.lab != lab:
        out.append(f"the plan is for lab {saved.lab!r}, the inventory is lab {lab!r}")
    if saved.inventory_sha256 != sha256(inventory_text):
        out.append("the inventory file changed since the plan was written")
    now = plan_records(plan)
    if list(now) == list(saved.changes):
        return out
    old_by, new_by = {_key(r): r for r in saved.changes}, {_key(r): r for r in now}
    out += [f"no longer planned: {_label(r)}" for r in saved.changes if _key(r) not in new_by]
    out += [f"newly planned: {_label(r)}" for r in now if _key(r) not in old_by]
    for rec in now:
        old = old_by.get(_key(rec))
        if old is not None and old != rec:
            out += [f"changed {_label(rec)}: {d}" for d in _field_diffs(old, rec, "")]
    if not any(line.startswith(("no longer", "newly", "changed")) for line in out):
        out.append("the same changes, in a different order")
    return out


class StalePlan(PreflightRefused):
    """`up --plan FILE`: the saved plan no longer matches the facts or the inventory."""


def stale_error(saved: SavedPlan, diffs: list[str]) -> StalePlan:
    age = max(0.0, time.time() - saved.created_at)
    listed = "\n  ".join(diffs[:20]) + (f"\n  ... and {len(diffs) - 20} more"
                                        if len(diffs) > 20 else "")
    return StalePlan(
        f"the saved plan {saved.path} (written {age:.0f} s ago) is stale; nothing was changed:"
        f"\n  {listed}",
        hint="review the new plan with `labctl plan INVENTORY --out FILE`, then "
             "`labctl up INVENTORY --plan FILE`",
    )
