"""The comparison (pure): matched rows -> per-endpoint figures, flags and a verdict.

`build(CompareInput, Thresholds) -> CompareReport`; the same input and seed give the same
report. Endpoints with fewer than `min_requests` matched rows are shown, not judged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Optional

from labctl.compare import flags as fl
from labctl.compare.endpoints import endpoint_of
from labctl.compare.match import Matched, match_rows
from labctl.compare.stats import (
    Interval,
    bootstrap_percentiles,
    mean,
    median,
    percentile,
    quantile_interval,
)
from labctl.compare.types import (
    BASELINE,
    BASELINE2,
    CANDIDATE,
    KINDS,
    ONLINE,
    CompareInput,
    CompareReport,
    EndpointCompare,
    Flag,
    Row,
    SideFigures,
    Thresholds,
    Verdict,
)
from labctl.verify.logparse import LogRecord

PCTS = (50.0, 90.0, 99.0)
#: The percentiles whose candidate-vs-baseline shift is judged (p99 is too noisy to flag).
SHIFT_STATS = {"p50": 0, "p90": 1}


def noise_pair(inp: CompareInput) -> tuple[str, str]:
    """The two sides that run one version: two baselines when there are, else online and
    baseline."""
    return (BASELINE, BASELINE2) if inp.baseline2 is not None else (ONLINE, BASELINE)


def _in_window(rows: list[Row], window: Optional[tuple[float, float]]) -> list[Row]:
    if window is None:
        return rows
    lo, hi = window
    return [r for r in rows if r.online.time is not None and lo <= r.online.time <= hi]


def build(inp: CompareInput, th: Thresholds = Thresholds()) -> CompareReport:
    """Match, figure, flag and judge (see the module docstring)."""
    m = match_rows(inp, th)
    rows = _in_window(m.rows, inp.window)
    sides = [ONLINE, BASELINE, CANDIDATE] + ([BASELINE2] if inp.baseline2 is not None else [])
    noise = noise_pair(inp)
    by_ep: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_ep[endpoint_of(row.online.method, row.online.uri)].append(row)
    counts = _counts(inp, m, sides)
    names = sorted(set(by_ep) | {ep for c in counts.values() for ep in c},
                   key=lambda ep: (-len(by_ep.get(ep, [])), ep))
    endpoints = [_endpoint(ep, by_ep.get(ep, []), counts, sides, noise, th) for ep in names]
    flags = sorted((f for e in endpoints for f in e.flags),
                   key=lambda f: (not f.regression, KINDS.index(f.kind), f.endpoint))
    return CompareReport(
        hosts=dict(inp.hosts), noise=f"{noise[0]} vs {noise[1]}",
        requests={s: sum(counts[s].values()) for s in sides}, matched=len(rows),
        unmatched=dict(m.unmatched), foreign=dict(m.foreign), endpoints=endpoints,
        flags=flags, verdict=_verdict(endpoints, flags, th), thresholds=th,
        window=inp.window, malformed=dict(inp.malformed),
        notes=_notes(inp, rows, endpoints, m, noise, th))


def _counts(inp: CompareInput, m: Matched, sides: Sequence[str]) -> dict[str, Counter[str]]:
    """Records per side and endpoint (online: in the window; targets: their copies)."""
    online = list(inp.online) if inp.window is None else [
        r for r in inp.online if r.time is not None and inp.window[0] <= r.time <= inp.window[1]]
    recs = {ONLINE: online, **m.copies}
    return {s: Counter(endpoint_of(r.method, r.uri) for r in recs.get(s, [])) for s in sides}


def _endpoint(ep: str, rows: list[Row], counts: dict[str, Counter[str]],
              sides: Sequence[str], noise: tuple[str, str], th: Thresholds
              ) -> EndpointCompare:
    judged = len(rows) >= th.min_requests
    lat_rows = [r for r in rows if all(_ms(r.side(s)) is not None for s in sides)]
    boot = _bootstrap(ep, lat_rows, sides, th) if judged else None
    figures = {s: _side(s, counts[s][ep], rows, lat_rows, boot, i, th)
               for i, s in enumerate(sides)}
    shifts = _shifts(lat_rows, boot, sides, (BASELINE, CANDIDATE), th)
    noise_shift = _shifts(lat_rows, boot, sides, noise, th)
    flags: list[Flag] = []
    if judged:
        found = [fl.errors(ep, rows, noise, th), fl.differs(ep, rows, noise, th, "status"),
                 _latency_flag(ep, rows, lat_rows, shifts, noise_shift, th),
                 fl.differs(ep, rows, noise, th, "body_size")]
        flags = [f for f in found if f is not None]
    return EndpointCompare(ep, len(rows), judged, f"{noise[0]} vs {noise[1]}", figures,
                           shifts, flags)


def _ms(rec: Optional[LogRecord]) -> Optional[float]:
    if rec is None or rec.request_time is None:
        return None
    return rec.request_time * 1000.0


def _column(rows: Sequence[Row], side: str) -> list[float]:
    return [_ms(r.side(side)) or 0.0 for r in rows]


Boot = list[list[list[float]]]


def _bootstrap(ep: str, lat_rows: Sequence[Row], sides: Sequence[str],
               th: Thresholds) -> Optional[Boot]:
    if len(lat_rows) < th.min_requests:
        return None
    columns = [_column(lat_rows, s) for s in sides]
    return bootstrap_percentiles(columns, PCTS, th.bootstrap, f"{th.seed}:{ep}")


def _interval(values: Sequence[float], samples: Optional[Sequence[float]], pct: float,
              alpha: float) -> Interval:
    point = percentile(values, pct)
    if not samples or point is None:
        return Interval(point)
    lo, hi = quantile_interval(samples, alpha)
    return Interval(point, lo, hi)


def _side(side: str, requests: int, rows: Sequence[Row], lat_rows: Sequence[Row],
          boot: Optional[Boot], col: int, th: Thresholds) -> SideFigures:
    recs = [r for r in (row.side(side) for row in rows) if r is not None]
    sizes = [float(r.body_bytes_sent) for r in recs if r.body_bytes_sent is not None]
    statuses = [r.status for r in recs if r.status is not None]
    lat = _column(lat_rows, side)
    p = [_interval(lat, boot[col][i] if boot else None, pct, th.alpha)
         for i, pct in enumerate(PCTS)]
    return SideFigures(
        side, requests, len(recs), dict(sorted(Counter(statuses).items())),
        sum(1 for s in statuses if s >= 500) / len(statuses) if statuses else None,
        mean(sizes), median(sizes), p[0], p[1], p[2])


def _shifts(lat_rows: Sequence[Row], boot: Optional[Boot], sides: Sequence[str],
            pair: tuple[str, str], th: Thresholds) -> dict[str, Interval]:
    """pair[1] - pair[0] for p50 and p90, with the bootstrap interval when there is one."""
    a, b = _column(lat_rows, pair[0]), _column(lat_rows, pair[1])
    out = {}
    for stat, i in SHIFT_STATS.items():
        pa, pb = percentile(a, PCTS[i]), percentile(b, PCTS[i])
        if pa is None or pb is None:
            out[stat] = Interval(None)
            continue
        if boot is None:
            out[stat] = Interval(pb - pa)
            continue
        ca, cb = boot[sides.index(pair[0])][i], boot[sides.index(pair[1])][i]
        lo, hi = quantile_interval([y - x for x, y in zip(ca, cb)], th.alpha)
        out[stat] = Interval(pb - pa, lo, hi)
    return out


def _latency_flag(ep: str, rows: Sequence[Row], lat_rows: Sequence[Row],
                  shifts: dict[str, Interval], noise: dict[str, Interval],
                  th: Thresholds) -> Optional[Flag]:
    if len(lat_rows) < th.min_requests:
        return None
    base, cand = _column(lat_rows, BASELINE), _column(lat_rows, CANDIDATE)
    points = {stat: (percentile(base, PCTS[i]) or 0.0, percentile(cand, PCTS[i]) or 0.0)
              for stat, i in SHIFT_STATS.items()}
    noise_abs = {stat: abs(iv.value or 0.0) for stat, iv in noise.items()}
    return fl.latency(ep, lat_rows, shifts, noise_abs, points, th)


def _verdict(endpoints: Sequence[EndpointCompare], flags: Sequence[Flag],
             th: Thresholds) -> Verdict:
    if not any(e.judged for e in endpoints):
        return Verdict(False, [f"no endpoint has {th.min_requests} requests matched on online, "
                               "baseline and candidate (compare.min_requests): nothing to "
                               "judge"], inconclusive=True)
    reasons = [f"{f.endpoint}: {f.summary}" for f in flags if f.regression]
    return Verdict(not reasons, reasons)


def _notes(inp: CompareInput, rows: Sequence[Row], endpoints: Sequence[EndpointCompare],
           m: Matched, noise: tuple[str, str], th: Thresholds) -> list[str]:
    notes = list(inp.notes)
    if noise == (ONLINE, BASELINE):
        notes.append("noise reference: online vs baseline (the online server should run the "
                     "baseline version; a second baseline target gives a tighter reference)")
    else:
        notes.append("noise reference: baseline vs baseline2 (two targets run the baseline)")
    sides = [ONLINE, BASELINE, CANDIDATE] + ([BASELINE2] if inp.baseline2 is not None else [])
    bare = [s for s in sides if rows and all(_ms(r.side(s)) is None for r in rows)]
    if bare:
        notes.append(f"no $request_time in the {', '.join(bare)} log(s): latency is not "
                     "compared (add $request_time to the log_format)")
    small = sum(1 for e in endpoints if not e.judged)
    if small:
        notes.append(f"{small} endpoint(s) with fewer than {th.min_requests} matched requests "
                     "are shown but not judged")
    for side, n in m.foreign.items():
        if n:
            notes.append(f"{side}: {n} request(s) from outside the client pool ignored")
    online = sum(1 for r in inp.online)
    if online and len(rows) < 0.99 * online * max(1, inp.multiplier):
        notes.append(f"{len(rows)} of {online} online requests reached both baseline and "
                     "candidate: check the copy itself with `labctl verify`")
    return notes
