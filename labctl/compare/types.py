"""The comparison's data (pure values): its input, thresholds, per-endpoint figures, flags and
the report. `labctl.compare.judge.build` computes a `CompareReport` from a `CompareInput`.

Latencies are in milliseconds, sizes in bytes, shares between 0 and 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from labctl.compare.stats import Interval
from labctl.verify.logparse import LogRecord

ONLINE, BASELINE, CANDIDATE, BASELINE2 = "online", "baseline", "candidate", "baseline2"
#: Every side, in the order tables show them.
SIDES = (ONLINE, BASELINE, CANDIDATE, BASELINE2)
#: Flag kinds, in the order they are checked and shown.
KINDS = ("errors", "status", "latency", "body_size")


@dataclass(frozen=True)
class Thresholds:
    """When a difference is flagged (the inventory's `compare:` section, see
    labctl.inventory.models.Compare). `max_lag`/`skew` are the matching windows of verify."""

    min_requests: int = 30
    latency_ms: float = 20.0
    error_share: float = 0.02
    size_share: float = 0.05
    alpha: float = 0.01
    bootstrap: int = 1000
    seed: int = 0
    max_lag: float = 30.0
    skew: float = 2.0
    examples: int = 3


@dataclass(frozen=True)
class CompareInput:
    """What is compared: the online records and each target's. `baseline2` (a second target
    running the baseline version) is the preferred noise reference; without it, online vs
    baseline is. `allowed_sources` (CIDRs) keeps only the copies in the targets' logs;
    `hosts` names the host of each side (for the report)."""

    online: Sequence[LogRecord]
    baseline: Sequence[LogRecord]
    candidate: Sequence[LogRecord]
    baseline2: Optional[Sequence[LogRecord]] = None
    multiplier: int = 1
    allowed_sources: Sequence[str] = ()
    hosts: Mapping[str, str] = field(default_factory=dict)
    window: Optional[tuple[float, float]] = None
    malformed: Mapping[str, int] = field(default_factory=dict)
    notes: Sequence[str] = ()


@dataclass(frozen=True)
class Row:
    """One online request and its copy on every target (`baseline2` None without one)."""

    online: LogRecord
    baseline: LogRecord
    candidate: LogRecord
    baseline2: Optional[LogRecord] = None

    def side(self, name: str) -> Optional[LogRecord]:
        return {ONLINE: self.online, BASELINE: self.baseline, CANDIDATE: self.candidate,
                BASELINE2: self.baseline2}[name]


@dataclass(frozen=True)
class SideFigures:
    """One side of one endpoint. `requests` counts every record of the side for the endpoint;
    the other figures cover the matched rows only (the same requests on every side)."""

    side: str
    requests: int
    matched: int
    status: dict[int, int]
    error_share: Optional[float]
    size_mean: Optional[float]
    size_median: Optional[float]
    p50_ms: Interval
    p90_ms: Interval
    p99_ms: Interval


@dataclass(frozen=True)
class Flag:
    """A candidate-vs-baseline difference beyond the noise.

    `kind`: errors | status | latency | body_size; `direction`: worse | better | changed;
    `regression` decides the verdict (faster or fewer errors is flagged, not a regression).
    `shift` is candidate - baseline (`stat` says of what: `5xx share`, `p90_ms`, `differs
    share`...), `low`/`high` its confidence interval when bootstrapped, `noise` the same
    difference between the two sides running one version, `p_value` the test's when one ran.
    For status and body_size the shift is the share of requests whose answer differs
    (`baseline` 0: a side never differs from itself; `candidate` = `shift`). `examples` are
    URIs of requests that show the difference."""

    endpoint: str
    kind: str
    direction: str
    regression: bool
    summary: str
    stat: str
    baseline: float
    candidate: float
    shift: float
    noise: float
    low: Optional[float] = None
    high: Optional[float] = None
    p_value: Optional[float] = None
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EndpointCompare:
    """One endpoint: figures per side, whether it had enough matched requests to be judged
    (`min_requests`), the noise reference used, and its flags."""

    endpoint: str
    matched: int
    judged: bool
    noise: str
    sides: dict[str, SideFigures]
    latency_shift_ms: dict[str, Interval]
    flags: list[Flag]


@dataclass(frozen=True)
class Verdict:
    """`passed`: no regression flagged on any judged endpoint. `inconclusive`: nothing could
    be judged (no endpoint with `min_requests` matched requests): not a pass."""

    passed: bool
    reasons: list[str]
    inconclusive: bool = False


@dataclass(frozen=True)
class CompareReport:
    hosts: dict[str, str]
    noise: str
    requests: dict[str, int]
    matched: int
    unmatched: dict[str, int]
    foreign: dict[str, int]
    endpoints: list[EndpointCompare]
    flags: list[Flag]
    verdict: Verdict
    thresholds: Thresholds
    window: Optional[tuple[float, float]]
    malformed: dict[str, int]
    notes: list[str]
