"""Per `-x` mapping figures of the ledger (pure).

With several mappings (`-x 80-T:8080,81-T:8081`) a request copied from online port 80 must show
up at the target on port 8080, not 8081. When both sides' logs carry `$server_port`, the ledger
matches with the port in the key (the online port translated through the mapping) and reports
online / target / matched / loss for each mapping. Without ports in the logs it cannot tell the
mappings apart and reports none (the totals still hold).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from labctl.verify.logparse import LogRecord


@dataclass(frozen=True)
class MappingFigures:
    """One `-x` mapping: online port -> target port, and what crossed it."""

    online_port: int
    target_port: int
    online: int
    target: int
    matched: int
    expected: float
    missing: int
    loss_pct: float


def uses_ports(online: Sequence[LogRecord], target: Sequence[LogRecord]) -> bool:
    """True when both sides log `$server_port` (so mappings can be told apart)."""
    return any(r.server_port is not None for r in online) and any(
        r.server_port is not None for r in target)


def online_port(rec: LogRecord, port_map: Mapping[int, int]) -> Optional[int]:
    """The target port a copy of this online record should arrive on."""
    if rec.server_port is None:
        return None
    return port_map.get(rec.server_port, rec.server_port)


def by_mapping(online: Sequence[LogRecord], target: Sequence[LogRecord],
               matched_online: Sequence[LogRecord], port_map: Mapping[int, int],
               ratio: float) -> list[MappingFigures]:
    """Figures per mapping: the configured ones, plus any other port seen online (as p -> p)."""
    per_online = Counter(r.server_port for r in online if r.server_port is not None)
    per_target = Counter(r.server_port for r in target if r.server_port is not None)
    per_matched = Counter(r.server_port for r in matched_online if r.server_port is not None)
    ports = dict(port_map)
    for p in per_online:
        ports.setdefault(p, p)
    rows = []
    for p, tp in sorted(ports.items()):
        n, got = per_online.get(p, 0), per_matched.get(p, 0)
        expected = n * ratio
        missing = max(0, round(expected - got))
        rows.append(MappingFigures(p, tp, n, per_target.get(tp, 0), got, expected, missing,
                                   100.0 * missing / expected if expected else 0.0))
    return rows
