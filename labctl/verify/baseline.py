"""Engine counters relative to a snapshot (pure).

The daemons' counters are cumulative since each daemon started, while `verify` compares only the
log lines written after a mark (the end of `up`, or the previous verify of a drill). Attribution
must use the same span, so the counters are snapshotted with the marks and subtracted here. A
daemon that restarted since the snapshot (another `started_at`, or any counter lower than at
the snapshot) started from zero: its counters are used as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from labctl.verify.types import DaemonStats

Baseline = dict[str, dict[str, Any]]


def key(d: DaemonStats) -> str:
    return f"{d.host}/{d.tool}"


def snapshot(daemons: Sequence[DaemonStats]) -> Baseline:
    """What to store with the marks: per daemon, its start time and counters."""
    return {key(d): {"started_at": d.started_at, "counters": dict(d.counters)}
            for d in daemons if d.counters}


def load(raw: Any) -> Baseline:
    """The stored snapshot, ignoring anything malformed (old marks files have none)."""
    out: Baseline = {}
    if not isinstance(raw, Mapping):
        return out
    for k, v in raw.items():
        if not isinstance(v, Mapping) or not isinstance(v.get("counters"), Mapping):
            continue
        started = v.get("started_at")
        out[str(k)] = {
            "started_at": float(started) if isinstance(started, (int, float)) else None,
            "counters": {str(c): int(n) for c, n in v["counters"].items()
                         if isinstance(n, (int, float))}}
    return out


def relative(daemons: Sequence[DaemonStats], baseline: Baseline,
             taken_at: float) -> list[DaemonStats]:
    """Each daemon's counters minus the snapshot's, where the snapshot is of the same run."""
    out = []
    for d in daemons:
        base = baseline.get(key(d))
        if base is None or base.get("started_at") != d.started_at:
            out.append(d)
            continue
        old: Mapping[str, int] = base["counters"]
        if any(d.counters.get(k, 0) < v for k, v in old.items()):
            out.append(d)                      # counters went down: a restart from zero
            continue
        delta = {k: v - old.get(k, 0) for k, v in d.counters.items()}
        out.append(dataclasses.replace(d, counters=delta, baseline_at=taken_at))
    return out
