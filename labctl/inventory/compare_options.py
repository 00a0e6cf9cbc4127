"""The `compare:` section: when `labctl compare` flags a candidate-vs-baseline difference."""

from __future__ import annotations

from pydantic import Field, StrictInt

from labctl.inventory.base import _Frozen


class Compare(_Frozen):
    """`labctl compare` (baseline vs candidate target): when a difference is flagged.

    An endpoint is judged with at least `min_requests` requests matched on every side. A
    candidate-vs-baseline difference is flagged only beyond the noise (the same difference
    between two sides running one version) by: `latency_ms` (p50/p90 shift, with its
    confidence interval excluding 0), `error_share` (5xx share, or share of changed status
    codes: 0.02 = 2 points), `size_share` (share of responses whose body size differs), and
    only when its test holds at `alpha`. `bootstrap` resamples, seeded by `seed`."""

    min_requests: StrictInt = Field(default=30, ge=1)
    latency_ms: float = Field(default=20.0, ge=0)
    error_share: float = Field(default=0.02, ge=0, le=1)
    size_share: float = Field(default=0.05, ge=0, le=1)
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    bootstrap: StrictInt = Field(default=1000, ge=100, le=100_000)
    seed: StrictInt = 0
