"""The acting half of `labctl compare` (thin): which target is which, the access logs of
online and every compared target, then the pure comparison.

Logs are read exactly as `labctl verify` reads them (`labctl.verify.fetch.fetch_log`): from the
marks `up` recorded, from the time `up` finished, or for a sliding `--window`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

from labctl.compare import judge
from labctl.compare.types import (
    BASELINE,
    BASELINE2,
    CANDIDATE,
    ONLINE,
    CompareInput,
    CompareReport,
    Thresholds,
)
from labctl.errors import UsageError
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Transport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as vf
from labctl.verify import logparse as lp
from labctl.verify.ledger import Thresholds as LedgerThresholds

ROLES_HINT = ("list the targets under hosts.targets, one with role: baseline and one with "
              "role: candidate (see inventories/staging-ab.yaml)")


def compared_targets(inv: Inventory) -> dict[str, HostSpec]:
    """{baseline, candidate[, baseline2]} -> target host, from the targets' roles. A second
    baseline target, when the inventory has one, becomes the noise reference."""
    by_role: dict[str, list[HostSpec]] = {"baseline": [], "candidate": []}
    for t in inv.targets:
        role = inv.target_role(t)
        if role in by_role:
            by_role[role].append(t)
    base, cand = by_role["baseline"], by_role["candidate"]
    if len(cand) != 1 or not 1 <= len(base) <= 2:
        found = ", ".join(f"{t.name} ({inv.target_role(t)})" for t in inv.targets)
        raise UsageError(f"compare needs one baseline and one candidate target; "
                         f"inventory lab {inv.lab!r} has: {found}", hint=ROLES_HINT)
    out = {BASELINE: base[0], CANDIDATE: cand[0]}
    if len(base) == 2:
        out[BASELINE2] = base[1]
    return out


def thresholds(inv: Inventory) -> Thresholds:
    """The inventory's `compare:` section, with verify's matching windows."""
    c, ledger = inv.compare, LedgerThresholds()
    return Thresholds(min_requests=c.min_requests, latency_ms=c.latency_ms,
                      error_share=c.error_share, size_share=c.size_share, alpha=c.alpha,
                      bootstrap=c.bootstrap, seed=c.seed, max_lag=ledger.max_lag,
                      skew=ledger.skew)


@dataclass(frozen=True)
class Fetched:
    """One host's records and its malformed-line count."""

    records: list[lp.LogRecord]
    malformed: int


def _start(scope: vf.Scope, now: float) -> Optional[float]:
    start = scope.start(now)
    if start is None and scope.marks is not None:
        start = float(math.floor(scope.marks.taken_at))
    return start


def _fetch_one(inv: Inventory, spec: HostSpec, t: Transport, scope: vf.Scope,
               start: Optional[float]) -> Fetched:
    log = inv.log_for(spec)
    mark = scope.marks.find(spec.name, log.path) if scope.marks is not None else None
    got = vf.fetch_log(t, spec, log.path, lp.LogFormat(log.format), mark,
                       None if mark is not None else start)
    return Fetched(got.result.records, got.result.malformed)


def _allowed(inv: Inventory) -> list[str]:
    """Where copies come from: the `-c` pool (two-server default: the online hosts)."""
    if inv.clients.pool:
        return [str(n) for n in inv.clients.pool_networks()]
    return [f"{h.address}/32" for h in inv.hosts.online]


def fetch_input(inv: Inventory, pool: HostPool, scope: vf.Scope,
                clock: vf.Clock = time.time) -> CompareInput:
    """Every side's records (hosts in parallel); an unreachable host is an error."""
    targets = compared_targets(inv)
    now = clock()
    start = _start(scope, now)
    hosts = [h.name for h in inv.hosts.online] + [t.name for t in targets.values()]
    outcomes = pool.each(lambda spec, t: _fetch_one(inv, spec, t, scope, start), hosts=hosts)
    got = {name: outcome.unwrap() for name, outcome in outcomes.items()}
    online = [r for h in inv.hosts.online for r in got[h.name].records]
    side = {s: got[t.name].records for s, t in targets.items()}
    names = {ONLINE: ", ".join(h.name for h in inv.hosts.online),
             **{s: t.name for s, t in targets.items()}}
    window = (start, now) if scope.window is not None and start is not None else None
    return CompareInput(
        online=online, baseline=side[BASELINE], candidate=side[CANDIDATE],
        baseline2=side.get(BASELINE2), multiplier=inv.engine.multiplier,
        allowed_sources=_allowed(inv), hosts=names, window=window,
        malformed={f"{n}:{inv.log_for(inv.host(n)).path}": f.malformed
                   for n, f in got.items() if f.malformed})


def run_compare(inv: Inventory, pool: HostPool, scope: vf.Scope,
                clock: vf.Clock = time.time) -> CompareReport:
    """One compare: fetch every side's log, then the pure comparison."""
    return judge.build(fetch_input(inv, pool, scope, clock), thresholds(inv))
