"""The loss ledger's data (pure values): its input, thresholds and report, with their parts.

`labctl.verify.ledger` computes a `LedgerReport` from a `LedgerInput` and re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from labctl.verify.logparse import LogRecord
from labctl.verify.ports import MappingFigures
from labctl.verify.selection import LogSelection, SelectionFigures


@dataclass(frozen=True)
class DaemonStats:
    """One engine daemon's stats file as read from its host (`state`: running, exited, missing,
    stale). Counters are cumulative since the daemon started, unless `baseline_at` says they
    were taken relative to a snapshot (labctl.verify.fetch subtracts the one taken with the log
    marks)."""

    host: str
    tool: str
    state: str
    counters: Mapping[str, int] = field(default_factory=dict)
    updated_at: Optional[float] = None
    detail: str = ""
    started_at: Optional[float] = None
    baseline_at: Optional[float] = None


@dataclass(frozen=True)
class Conntrack:
    """nf_conntrack usage on a host now and (when recorded) at `up`."""

    host: str
    count: Optional[int]
    max: Optional[int]
    count_at_up: Optional[int] = None

    @property
    def used_pct(self) -> Optional[float]:
        if self.count is None or not self.max:
            return None
        return 100.0 * self.count / self.max


@dataclass(frozen=True)
class Thresholds:
    """Verdict thresholds. `ratio_tolerance` is relative to the expected ratio (0.005 = 0.5 %)."""

    ratio_tolerance: float = 0.005
    max_leaks: int = 0
    max_lag: float = 30.0
    skew: float = 2.0
    sort_query: bool = False
    worst_endpoints: int = 5
    slow_target_seconds: float = 1.0


@dataclass(frozen=True)
class LedgerInput:
    """What the ledger compares. `online` maps each online host to its records; `window` is the
    (start, end) the online side was read for (None: everything given)."""

    online: Mapping[str, Sequence[LogRecord]]
    target: Sequence[LogRecord]
    sample_percent: float = 100.0
    multiplier: int = 1
    window: Optional[tuple[float, float]] = None
    allowed_sources: Sequence[str] = ()
    daemons: Sequence[DaemonStats] = ()
    conntrack: Sequence[Conntrack] = ()
    malformed: Mapping[str, int] = field(default_factory=dict)
    #: `-x` mappings, online port -> target port (used when the logs carry `$server_port`)
    port_map: Mapping[int, int] = field(default_factory=dict)
    #: Notes from the caller (e.g. what the engine counters cover), shown with the ledger's own.
    notes: Sequence[str] = ()
    #: The inventory's engine.select: only the online requests it selects are expected.
    selection: Optional[LogSelection] = None
    #: The copied target ports ("target:80"), to name where refusals came from.
    target_ports: Sequence[int] = ()
    #: This ledger's target address (set per target by labctl.verify.targets.build_all).
    target_address: Optional[str] = None


@dataclass(frozen=True)
class EndpointLoss:
    endpoint: str
    online: int
    target: int
    expected: float
    missing: int
    loss_pct: float


@dataclass(frozen=True)
class Latency:
    p50: Optional[float]
    p90: Optional[float]
    p99: Optional[float]
    samples: int


@dataclass(frozen=True)
class Bucket:
    name: str
    requests: int
    evidence: str


@dataclass(frozen=True)
class Attribution:
    missing: int
    buckets: list[Bucket]
    unexplained: int


@dataclass(frozen=True)
class Verdict:
    """`inconclusive`: the ledger could not be computed as configured (e.g. the selection
    needs a field the log lacks); `passed` is then False and `reasons` say why."""

    passed: bool
    reasons: list[str]
    tolerance: float
    inconclusive: bool = False


@dataclass(frozen=True)
class LedgerReport:
    online_requests: int
    online_by_host: dict[str, int]
    target_requests: int
    target_matched: int
    target_excess: int
    expected_ratio: float
    expected_requests: float
    copy_ratio: Optional[float]
    loss_pct: float
    excess_pct: float
    worst_endpoints: list[EndpointLoss]
    status_online: dict[int, int]
    status_target: dict[int, int]
    latency_online: Latency
    latency_target: Latency
    latency_diff: Latency
    leaks: int
    leak_sources: dict[str, int]
    conntrack: list[Conntrack]
    daemons: list[DaemonStats]
    attribution: Attribution
    verdict: Verdict
    malformed: dict[str, int]
    window: Optional[tuple[float, float]]
    notes: list[str]
    by_mapping: list[MappingFigures] = field(default_factory=list)
    #: None without engine.select; else online_requests counts every online request and the
    #: expectation, ratios, endpoints, status mix and latency cover the selected ones only.
    selection: Optional[SelectionFigures] = None
    #: The target's error answers (5xx/408/499) per endpoint, where it gave any:
    #: endpoint -> (errors, copies answered).
    target_errors: dict[str, tuple[int, int]] = field(default_factory=dict)
