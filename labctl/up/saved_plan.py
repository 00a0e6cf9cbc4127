"""Saved plans: `labctl plan --out FILE` writes one, `labctl up --plan FILE` applies it only if it
is still what `up` would do (pure: no I/O besides reading and writing the file).

A saved plan holds the inventory's hash, whether `--fix` was given, the findings that blocked (if
any) and every change as its exact argv lists. At `up --plan`, labctl gathers the facts again and
builds the plan anew; when the inventory or any change differs, the plan is *stale* and `up`
refuses before it touches anything, listing the differences (Terraform's "saved plan is stale").
Live counters (conntrack usage, load) are not part of a plan, so they never make it stale.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import PreflightRefused, UsageError
from labctl.model import Change, Plan

FORMAT = "labctl-plan/1"


@dataclass(frozen=True)
class SavedPlan:
    path: str
    lab: str
    inventory_sha256: str
    fix: bool
    created_at: float
    changes: tuple[str, ...]      # one canonical line per change, in execution order
    digest: str


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def change_line(change: Change) -> str:
    """One change as a stable, readable line: host, step, kind, apply argvs, undo argvs."""
    body = {"apply": [list(a) for a in change.apply], "undo": [list(u) for u in change.undo],
            "guarded": change.guarded}
    return (f"[{change.host}] {change.step} ({change.kind.value}): {change.description} "
            f"{json.dumps(body, sort_keys=True, separators=(',', ':'))}")


def plan_lines(plan: Plan) -> tuple[str, ...]:
    """Every change, then every daemon `up` starts with its engine flags."""
    return (tuple(change_line(c) for c in plan.changes)
            + tuple(f"[daemon] {d}" for d in plan.daemons))


def digest(inventory_sha: str, fix: bool, lines: tuple[str, ...]) -> str:
    h = hashlib.sha256(f"{FORMAT}\n{inventory_sha}\nfix={int(fix)}\n".encode())
    for line in lines:
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def dump(plan: Plan, inventory_path: str, inventory_text: str, fix: bool,
         now: float | None = None) -> dict[str, Any]:
    inv_sha = sha256(inventory_text)
    lines = plan_lines(plan)
    return {"format": FORMAT, "lab": plan.lab, "inventory": inventory_path,
            "inventory_sha256": inv_sha, "fix": fix,
            "created_at": time.time() if now is None else now,
            "changes": list(lines), "digest": digest(inv_sha, fix, lines)}


def save(path: str, plan: Plan, inventory_path: str, inventory_text: str, fix: bool) -> str:
    """Write the plan file (atomically); returns its digest."""
    data = dump(plan, inventory_path, inventory_text, fix)
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(p)
    except OSError as exc:
        raise UsageError(f"cannot write the plan file {path}: {exc.strerror or exc}") from exc
    return str(data["digest"])


def load(path: str) -> SavedPlan:
    """Read and check a plan file; every problem names the file and the field."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the plan file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{path}: not a labctl plan (not JSON: {exc})",
                         hint="write one with `labctl plan INVENTORY --out FILE`") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise UsageError(f"{path}: not a labctl plan (format {got!r}, expected {FORMAT!r})",
                         hint="write one with `labctl plan INVENTORY --out FILE`")
    fields: dict[str, type | tuple[type, ...]] = {
        "lab": str, "inventory_sha256": str, "fix": bool, "created_at": (int, float),
        "changes": list, "digest": str}
    for name, typ in fields.items():
        if not isinstance(data.get(name), typ):
            raise UsageError(f"{path}: field {name!r} is missing or of the wrong type")
    changes = tuple(data["changes"])
    if not all(isinstance(c, str) for c in changes):
        raise UsageError(f"{path}: field 'changes' must be a list of strings")
    if digest(data["inventory_sha256"], data["fix"], changes) != data["digest"]:
        raise UsageError(f"{path}: the plan was edited after it was written (digest mismatch)",
                         hint="write a new one with `labctl plan INVENTORY --out FILE`")
    return SavedPlan(path, data["lab"], data["inventory_sha256"], data["fix"],
                     float(data["created_at"]), changes, data["digest"])


def differences(saved: SavedPlan, lab: str, inventory_text: str, plan: Plan) -> list[str]:
    """Why the saved plan is not what `up` would do now ([] = still current)."""
    out: list[str] = []
    if saved.lab != lab:
        out.append(f"the plan is for lab {saved.lab!r}, the inventory is lab {lab!r}")
    if saved.inventory_sha256 != sha256(inventory_text):
        out.append("the inventory file changed since the plan was written")
    now = plan_lines(plan)
    if now != saved.changes:
        old_set, new_set = set(saved.changes), set(now)
        out += [f"no longer planned: {line}" for line in saved.changes if line not in new_set]
        out += [f"newly planned: {line}" for line in now if line not in old_set]
        if old_set == new_set:
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
