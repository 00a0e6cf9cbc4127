"""Rows: each online request with its copy on every target (pure).

Each target's log is matched to the online log exactly as the loss ledger does it
(`labctl.verify.ledger.match`: method, normalised URI and body length, in time order within
`max_lag`/`skew`); an online request becomes a row when both the baseline and the candidate
logged a copy of it. With `-n N` every target gets N copies of a request: the k-th copy on one
target is paired with the k-th on the other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from labctl.compare.types import BASELINE, BASELINE2, CANDIDATE, CompareInput, Row, Thresholds
from labctl.verify.ledger import in_networks
from labctl.verify.ledger import match as ledger_match
from labctl.verify.logparse import LogRecord


@dataclass
class Matched:
    """The rows, and per target how many copies matched no online request (`unmatched`) and
    how many records came from outside the client pool (`foreign`: not copies)."""

    rows: list[Row] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)
    foreign: dict[str, int] = field(default_factory=dict)
    copies: dict[str, list[LogRecord]] = field(default_factory=dict)


def copies_only(records: Sequence[LogRecord], allowed: Sequence[str]) -> list[LogRecord]:
    """The records whose client address is in `allowed` (every record when it is empty)."""
    if not allowed:
        return list(records)
    nets = [ipaddress.ip_network(n, strict=False) for n in allowed]
    return [r for r in records if in_networks(r.remote_addr, nets)]


def _copies_of(online: Sequence[LogRecord], target: Sequence[LogRecord], capacity: int,
               th: Thresholds) -> tuple[dict[int, list[LogRecord]], int]:
    """id(online record) -> its copies in time order; and the count of unmatched copies."""
    got = ledger_match(online, target, capacity, th.max_lag, th.skew)
    out: dict[int, list[LogRecord]] = {}
    for orig, copy in got.pairs:
        out.setdefault(id(orig), []).append(copy)
    for copies in out.values():
        copies.sort(key=lambda r: r.time or 0.0)
    return out, len(got.unmatched)


def match_rows(inp: CompareInput, th: Thresholds) -> Matched:
    """Rows in online time order (see the module docstring)."""
    result = Matched()
    targets = {BASELINE: inp.baseline, CANDIDATE: inp.candidate}
    if inp.baseline2 is not None:
        targets[BASELINE2] = inp.baseline2
    capacity = max(1, inp.multiplier)
    found: dict[str, dict[int, list[LogRecord]]] = {}
    for side, records in targets.items():
        copies = copies_only(records, inp.allowed_sources)
        result.foreign[side] = len(records) - len(copies)
        result.copies[side] = copies
        found[side], result.unmatched[side] = _copies_of(inp.online, copies, capacity, th)
    for orig in sorted(inp.online, key=lambda r: r.time or 0.0):
        base, cand = found[BASELINE].get(id(orig), []), found[CANDIDATE].get(id(orig), [])
        second: Optional[list[LogRecord]] = found[BASELINE2].get(id(orig), []) \
            if BASELINE2 in found else None
        for k, (b, c) in enumerate(zip(base, cand)):
            b2 = second[k] if second is not None and k < len(second) else None
            result.rows.append(Row(orig, b, c, b2))
    return result
