"""The numbers behind a report's plots (pure): access-log records and counters -> series.

Every function here takes values and returns values (no clock, no files, no matplotlib), so the
same numbers are drawn (`labctl.report.plots`) and written to the report's JSON.

    Traffic            the records a verify compared: online (all online hosts) and target
    rate_series        requests per second per side and the copy ratio, in time bins
    latency_cdf        the distribution of `$request_time` per side, as quantile points
    status_mix         per endpoint and side, how many requests got each status code
    counter_steps      engine counters of each drill verify step (since the previous mark)

Times on the x axes are seconds since `t0` (the window's start, or the drill's), so a report
reads "12 s into the run" and says when that was once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from labctl.verify.ledger import DaemonStats
from labctl.verify.logparse import LogRecord, endpoint

#: Bin widths (seconds) a rate series may use: the first that keeps the bins at most MAX_BINS.
BIN_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
MAX_BINS = 120
#: Quantile points of a latency CDF (0 %, 0.5 %, ... 100 %).
CDF_POINTS = 201
#: Endpoints shown in the status mix (busiest first); the rest are summed as "other".
MAX_ENDPOINTS = 8
OTHER = "other"
#: Counters drawn per drill verify step, as "tool counter": volumes (what flowed) and losses
#: (what went missing). Both daemons count `captured`, so a counter is named with its tool.
VOLUME_COUNTERS = ("tcpcopy captured", "tcpcopy sessions_created", "tcpcopy requests_sent",
                   "intercept captured", "intercept resp_routed")
LOSS_COUNTERS = ("tcpcopy kernel_drops", "tcpcopy malformed", "tcpcopy sessions_shed",
                 "tcpcopy sessions_no_synack", "tcpcopy sessions_no_intercept",
                 "tcpcopy sessions_timeout", "tcpcopy send_errors", "intercept kernel_drops",
                 "intercept resp_unrouted")


@dataclass(frozen=True)
class Traffic:
    """The access-log records behind a ledger: every online host's, and the target's (all
    it logged in the compared span: copies, and foreign requests if any)."""

    online: Sequence[LogRecord]
    target: Sequence[LogRecord]
    window: Optional[tuple[float, float]] = None

    def sides(self) -> dict[str, list[LogRecord]]:
        """Both sides' records, cut to the window when there is one."""
        return {"online": _in_window(self.online, self.window),
                "target": _in_window(self.target, self.window)}

    @property
    def empty(self) -> bool:
        return not self.online and not self.target


def _in_window(records: Sequence[LogRecord], window: Optional[tuple[float, float]]
               ) -> list[LogRecord]:
    if window is None:
        return list(records)
    lo, hi = window
    return [r for r in records if r.time is not None and lo <= r.time <= hi]


def merge(parts: Sequence[Traffic]) -> Traffic:
    """Several spans' records as one (a drill's verify steps, each since the previous)."""
    return Traffic([r for p in parts for r in p.sides()["online"]],
                   [r for p in parts for r in p.sides()["target"]])


# ---------------------------------------------------------------- rates over time


@dataclass(frozen=True)
class RateSeries:
    """Requests per second per side in bins of `bin_seconds` starting at `t0` (POSIX
    seconds); `starts[i]` is bin i's start in seconds since t0. `ratio[i]` is target/online
    in bin i (None where the online side had no request); `expected` is the configured ratio."""

    t0: float
    bin_seconds: int
    starts: list[float]
    online: list[float]
    target: list[float]
    ratio: list[Optional[float]]
    expected: Optional[float] = None
    tolerance: Optional[float] = None
    untimed: int = 0

    @property
    def empty(self) -> bool:
        return not self.starts


def bin_width(span: float, max_bins: int = MAX_BINS) -> int:
    """The smallest width of BIN_WIDTHS that cuts `span` seconds into at most `max_bins`."""
    for w in BIN_WIDTHS:
        if span / w <= max_bins:
            return w
    return BIN_WIDTHS[-1]


def rate_series(traffic: Traffic, t0: Optional[float] = None,
                expected: Optional[float] = None, tolerance: Optional[float] = None
                ) -> RateSeries:
    """Requests per second online and at the target, and their ratio, bin by bin.

    `t0` defaults to the window's start, else the first record's time. Records without a
    time cannot be placed: they are counted in `untimed`."""
    sides = traffic.sides()
    times = {s: [r.time for r in recs if r.time is not None] for s, recs in sides.items()}
    untimed = sum(len(recs) - len(times[s]) for s, recs in sides.items())
    every = times["online"] + times["target"]
    if not every:
        return RateSeries(t0 or 0.0, 1, [], [], [], [], expected, tolerance, untimed)
    start = t0 if t0 is not None else (traffic.window[0] if traffic.window else min(every))
    start = min(start, min(every))
    end = traffic.window[1] if traffic.window else max(every)
    end = max(end, max(every))
    width = bin_width(end - start)
    n = int((end - start) // width) + 1
    counts = {s: _histogram(ts, start, width, n) for s, ts in times.items()}
    ratio = [None if o == 0 else t / o for o, t in zip(counts["online"], counts["target"])]
    return RateSeries(start, width, [float(i * width) for i in range(n)],
                      [c / width for c in counts["online"]],
                      [c / width for c in counts["target"]], ratio, expected, tolerance,
                      untimed)


def _histogram(times: Sequence[float], start: float, width: int, n: int) -> list[int]:
    out = [0] * n
    for t in times:
        out[min(n - 1, max(0, int((t - start) // width)))] += 1
    return out


# ---------------------------------------------------------------- latency


@dataclass(frozen=True)
class Cdf:
    """A side's `$request_time` distribution: `points` are (seconds, fraction of requests at
    or below it), at evenly spaced fractions; `samples` requests logged a time."""

    samples: int
    points: list[tuple[float, float]]

    def quantile(self, q: float) -> Optional[float]:
        """The smallest time with at least fraction q of the requests at or below it."""
        return next((x for x, f in self.points if f >= q), None)


def latency_cdf(records: Sequence[LogRecord], points: int = CDF_POINTS) -> Cdf:
    """Nearest-rank quantiles at `points` evenly spaced fractions (0 and 1 included)."""
    values = sorted(r.request_time for r in records if r.request_time is not None)
    if not values:
        return Cdf(0, [])
    n = len(values)
    out = []
    for i in range(points):
        q = i / (points - 1)
        rank = max(1, math.ceil(q * n))
        out.append((values[rank - 1], q))
    return Cdf(n, out)


def latency_cdfs(traffic: Traffic) -> dict[str, Cdf]:
    return {side: latency_cdf(recs) for side, recs in traffic.sides().items()}


# ---------------------------------------------------------------- status mix


@dataclass(frozen=True)
class StatusMix:
    """Per endpoint (`METHOD /path`, busiest online first, then "other"), per side, the count
    of each status code; `codes` are every code seen, sorted. A request logged without a
    status is counted under code 0."""

    endpoints: list[str]
    codes: list[int]
    counts: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.endpoints

    def column(self, side: str, code: int) -> list[int]:
        """For one side and code, the count at each endpoint (a stacked bar's layer)."""
        return [self.counts[side].get(ep, {}).get(code, 0) for ep in self.endpoints]


def endpoint_of(rec: LogRecord) -> str:
    return f"{rec.method or '-'} {endpoint(rec.uri)}"


def status_mix(traffic: Traffic, limit: int = MAX_ENDPOINTS) -> StatusMix:
    sides = traffic.sides()
    busiest = Counter(endpoint_of(r) for r in sides["online"])
    busiest.update({endpoint_of(r): 0 for r in sides["target"]})
    ranked = sorted(busiest, key=lambda e: (-busiest[e], e))
    shown = ranked[:limit] if len(ranked) <= limit else ranked[:limit - 1]
    keep = set(shown)
    counts: dict[str, dict[str, dict[int, int]]] = {}
    codes: set[int] = set()
    for side, recs in sides.items():
        per: dict[str, Counter[int]] = {}
        for r in recs:
            ep = endpoint_of(r)
            code = r.status or 0
            per.setdefault(ep if ep in keep else OTHER, Counter())[code] += 1
            codes.add(code)
        counts[side] = {ep: dict(sorted(c.items())) for ep, c in per.items()}
    endpoints = shown + ([OTHER] if len(ranked) > len(shown) else [])
    return StatusMix(endpoints, sorted(codes), counts)


# ---------------------------------------------------------------- engine counters


@dataclass(frozen=True)
class CounterSteps:
    """Engine counters per drill verify step (each relative to the previous mark when the
    ledger had a snapshot): `steps` are labels, `volumes[counter][i]` / `losses[counter][i]`
    the sum over every daemon of that tool at step i (counters are named "tool counter").
    Only counters some step reports are kept; losses only when non-zero."""

    steps: list[str]
    volumes: dict[str, list[int]]
    losses: dict[str, list[int]]

    @property
    def empty(self) -> bool:
        return not self.steps or not (self.volumes or self.losses)


def counter_steps(steps: Sequence[tuple[str, Sequence[DaemonStats]]]) -> CounterSteps:
    """`steps`: (label, the daemons a verify step read) in order."""
    labels = [label for label, _ in steps]
    sums = [_sum_counters(daemons) for _, daemons in steps]
    volumes = {k: [s.get(k, 0) for s in sums] for k in VOLUME_COUNTERS
               if any(k in s for s in sums)}
    losses = {k: [s.get(k, 0) for s in sums] for k in LOSS_COUNTERS
              if any(s.get(k, 0) for s in sums)}
    return CounterSteps(labels, volumes, losses)


def _sum_counters(daemons: Sequence[DaemonStats]) -> Mapping[str, int]:
    total: Counter[str] = Counter()
    for d in daemons:
        for k, v in d.counters.items():
            total[f"{d.tool} {k}"] += v
    return total
