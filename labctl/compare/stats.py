"""The statistics of a comparison (pure, deterministic): percentiles, a seeded bootstrap,
the two-proportion test.

Percentiles are nearest-rank (as the loss ledger's), so a percentile is always a latency that
was logged. The bootstrap resamples whole matched rows (paired: a resample keeps a request's
latency on every side together) with `random.Random(seed)`, so the same input and seed give
the same intervals on every machine.
"""

from __future__ import annotations

import math
import random
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Optional

#: Rows used by one bootstrap at most: larger endpoints are subsampled (seeded) to bound the
#: time; the interval is then a little wider, never narrower.
MAX_BOOTSTRAP_ROWS = 1000


def nearest_rank(ordered: Sequence[float], pct: float) -> float:
    """The `pct` percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def percentile(values: Sequence[float], pct: float) -> Optional[float]:
    return nearest_rank(sorted(values), pct) if values else None


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def median(values: Sequence[float]) -> Optional[float]:
    """The middle value (the mean of the two middle ones for an even count)."""
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap confidence interval (None without data)."""

    value: Optional[float]
    low: Optional[float] = None
    high: Optional[float] = None

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (
            self.low > 0 or self.high < 0)


def quantile_interval(samples: Sequence[float], alpha: float) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) quantiles of bootstrap samples (percentile method)."""
    ordered = sorted(samples)
    n = len(ordered)
    lo = ordered[max(0, math.floor(alpha / 2 * n))]
    hi = ordered[min(n - 1, math.ceil((1 - alpha / 2) * n) - 1)]
    return lo, hi


def bootstrap_percentiles(columns: Sequence[Sequence[float]], pcts: Sequence[float],
                          resamples: int, seed: str) -> list[list[list[float]]]:
    """Paired bootstrap of percentiles. `columns` are equally long (one per side, row i of
    every column from the same request); the result is [column][pct] -> `resamples` values."""
    rng = random.Random(seed)
    n = len(columns[0]) if columns else 0
    out: list[list[list[float]]] = [[[] for _ in pcts] for _ in columns]
    if n == 0:
        return out
    rows = range(n)
    if n > MAX_BOOTSTRAP_ROWS:
        keep = sorted(rng.sample(rows, MAX_BOOTSTRAP_ROWS))
        columns = [[col[i] for i in keep] for col in columns]
        n, rows = MAX_BOOTSTRAP_ROWS, range(MAX_BOOTSTRAP_ROWS)
    # A resample is a count per row; a column's k-th smallest resampled value is found by
    # walking its rows in value order (sorted once) up to a cumulative count of k: the same
    # values as sorting every resample, without the sorts.
    orders = [sorted(rows, key=col.__getitem__) for col in columns]
    ranks = [max(1, math.ceil(pct / 100.0 * n)) for pct in pcts]
    for _ in range(resamples):
        counts = Counter(map(n.__rmod__, _words(rng, n)))
        for c, order in enumerate(orders):
            cumulative = list(accumulate(map(counts.get, order, repeat(0))))
            for p, rank in enumerate(ranks):
                out[c][p].append(columns[c][order[bisect_left(cumulative, rank)]])
    return out


def _words(rng: random.Random, k: int) -> array[int]:
    """`k` random 32-bit words from `rng`, the same on every machine (read little-endian);
    drawn as bytes because `rng.choices` spends most of a bootstrap in Python. (`word % n`
    picks a row: the bias, n / 2**32, is negligible.)"""
    words = array("I", rng.randbytes(4 * k))  # C unsigned int: 4 bytes wherever CPython runs
    if sys.byteorder == "big":  # pragma: no cover
        words.byteswap()
    return words


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (1.0 when it cannot tell)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(x1 / n1 - x2 / n2) / se
    return math.erfc(z / math.sqrt(2))
