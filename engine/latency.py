"""A latency histogram with fixed log-spaced buckets (pure): cheap to feed per request, small
to ship in the stats file, good for percentiles within one bucket (about 10 %)."""

from __future__ import annotations

import bisect
from typing import Dict, List

# bucket upper bounds in milliseconds: 0.05 ms .. ~120 s, 10 % apart
BOUNDS: List[float] = []
_b = 0.05
while _b < 120_000:
    BOUNDS.append(round(_b, 4))
    _b *= 1.1


class Histogram:
    """Counts of durations (seconds in, milliseconds out) per bucket."""

    __slots__ = ("count", "counts", "last_ms", "max_ms", "total_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.last_ms = 0.0

    def add(self, seconds: float) -> None:
        ms = seconds * 1000.0
        self.counts[bisect.bisect_left(BOUNDS, ms)] += 1
        self.count += 1
        self.total_ms += ms
        self.last_ms = ms
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, p: float) -> float:
        """The upper bound of the bucket holding the p-th percentile, never above the largest
        duration seen (0 when empty)."""
        if not self.count:
            return 0.0
        want = p / 100.0 * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= want and n:
                return min(BOUNDS[i], self.max_ms) if i < len(BOUNDS) else self.max_ms
        return self.max_ms

    def summary(self, last: bool = False) -> Dict[str, object]:
        """count, mean, p50, p90, p99, max (milliseconds), and the non-empty buckets (upper
        bound in ms -> count; "inf" beyond the last) so a reader can subtract two snapshots
        and take percentiles of a window, for the stats file; with ``last``, also the last
        duration added."""
        buckets = {(str(BOUNDS[i]) if i < len(BOUNDS) else "inf"): n
                   for i, n in enumerate(self.counts) if n}
        out: Dict[str, object] = {
            "count": self.count,
            "mean": round(self.total_ms / self.count, 3) if self.count else 0.0,
            "p50": round(self.percentile(50), 3), "p90": round(self.percentile(90), 3),
            "p99": round(self.percentile(99), 3), "max": round(self.max_ms, 3),
            "buckets": buckets}
        if last:
            out["last"] = round(self.last_ms, 3)
        return out
