"""What tcpcopy's `-r` samples, seen from the online access log (pure).

tcpcopy keeps or drops each client (address, port) whole (``engine.session.config.sample_keep``),
so the copy ratio of a sampled run varies by more than per-request sampling would: by how many
requests each kept or dropped unit carried. Verify widens its tolerance to 3 sd of that.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

from labctl.verify.logparse import LogRecord

__all__ = ["sampling_basis", "sampling_sd"]


def _sampling_unit(r: LogRecord) -> Hashable:
    """What tcpcopy's `-r` keeps or drops whole: the client's (address, port). Without
    `$remote_port` in the log, its connection (`$connection`); without that, the request."""
    if r.remote_port is not None:
        return (r.remote_addr, r.remote_port)
    if r.connection is not None:
        return (r.remote_addr, None, r.connection)
    return id(r)


def sampling_sd(online: Sequence[LogRecord], sample_percent: float, multiplier: int) -> float:
    """Standard deviation of the copy ratio caused by session sampling alone.

    Whole sampling units are kept (probability p): tcpcopy decides per client (address, port),
    so every connection a client makes from a reused port shares one decision. With units of
    s_i requests sd = n * sqrt(p (1 - p) * sum s_i^2) / sum s_i. Units are told apart by the
    logged `$remote_port`; without it by `$connection` (connections from a reused port then
    count apart: a lower bound), without that every request counts as its own (lower still)."""
    p = min(max(sample_percent / 100.0, 0.0), 1.0)
    if p in (0.0, 1.0) or not online:
        return 0.0
    sizes = Counter(_sampling_unit(r) for r in online)
    total = sum(sizes.values())
    return multiplier * math.sqrt(p * (1 - p) * sum(s * s for s in sizes.values())) / total


def sampling_basis(online: Sequence[LogRecord]) -> str:
    """What ``sampling_sd`` could count units by: "port", "connection" or "request" (the
    weakest any online line allowed)."""
    if all(r.remote_port is not None for r in online):
        return "port"
    if all(r.remote_port is not None or r.connection is not None for r in online):
        return "connection"
    return "request"
