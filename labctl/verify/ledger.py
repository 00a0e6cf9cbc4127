"""The loss ledger (pure): online vs target access-log records, engine counters beside them.

Copied requests come from rewritten client addresses, so a target record is matched to an online
record by (method, normalised URI, body length), taking the earliest unmatched online record with
that key whose time is at most `max_lag` seconds before it (and at most `skew` after it, for clock
skew between hosts). With `-n N` one online record may be matched N times.

Every missing request (expected copies - matched copies) is attributed, in request units:

- when tcpcopy reports `requests_sent` (S): the loss before sending, expected - S, goes first to
  *capture* (kernel_drops + malformed), then to the *target* (sessions it refused: a RST to the
  copied SYN, `sessions_refused`), then to *session* emulation (sessions shed, no SYN-ACK, timed
  out); the loss after sending, S - matched, goes first to the *target* (copies it answered
  with 5xx/408/499, sessions it reset midway, and session timeouts when the target was slow),
  the rest to the *path* (sent but never logged by the target);
- without `requests_sent`: capture, target (refused), session, then path (send errors,
  responses intercept could not route back), each capped by the counters.

Whatever the counters cannot explain is shown as *unexplained*; the buckets always sum to the
missing count.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from labctl.verify import ports
from labctl.verify import selection as sel
from labctl.verify.attribution import attribute, counter_sum
from labctl.verify.logparse import LogRecord, endpoint, normalise_uri
from labctl.verify.sampling import sampling_basis, sampling_sd
from labctl.verify.types import (
    Attribution,
    Bucket,
    Conntrack,
    DaemonStats,
    EndpointLoss,
    Latency,
    LedgerInput,
    LedgerReport,
    Thresholds,
    Verdict,
)

#: The ledger's API; its types are defined in labctl.verify.types and re-exported here.
__all__ = [
    "ERROR_STATUSES",
    "Attribution",
    "Bucket",
    "Conntrack",
    "DaemonStats",
    "EndpointLoss",
    "Key",
    "Latency",
    "LedgerInput",
    "LedgerReport",
    "MatchResult",
    "Thresholds",
    "Verdict",
    "attribute",
    "build",
    "counter_sum",
    "in_networks",
    "judge",
    "latency",
    "latency_diff",
    "match",
    "percentile",
    "request_key",
    "sampling_sd",
    "status_mix",
    "worst_endpoints",
]

#: (method, normalised URI, body length, target port or None when ports are not compared)
Key = tuple[Optional[str], str, Optional[int], Optional[int]]
ERROR_STATUSES = frozenset({408, 499})




# ---------------------------------------------------------------- matching


def request_key(rec: LogRecord, sort_query: bool = False, port: Optional[int] = None) -> Key:
    return (rec.method, normalise_uri(rec.uri, sort_query), rec.content_length, port)


@dataclass
class MatchResult:
    """`pairs` holds (online, target) for every matched copy."""

    pairs: list[tuple[LogRecord, LogRecord]] = field(default_factory=list)
    unmatched: list[LogRecord] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.pairs)


def match(online: Sequence[LogRecord], target: Sequence[LogRecord], capacity: int,
          max_lag: float, skew: float, sort_query: bool = False,
          port_map: Optional[Mapping[int, int]] = None) -> MatchResult:
    """Greedy in-order matching per key; O(n log n). Records without a time match by count.
    With `port_map`, a copy must also arrive on the target port its original's port maps to."""
    by_key: dict[Key, list[LogRecord]] = defaultdict(list)
    for rec in online:
        port = None if port_map is None else ports.online_port(rec, port_map)
        by_key[request_key(rec, sort_query, port)].append(rec)
    for recs in by_key.values():
        recs.sort(key=_t)
    pending: dict[Key, list[LogRecord]] = defaultdict(list)
    for rec in target:
        port = None if port_map is None else rec.server_port
        pending[request_key(rec, sort_query, port)].append(rec)
    result = MatchResult()
    for key, recs in pending.items():
        origs = by_key.get(key, [])
        times = [_t(r) for r in origs]
        left = [capacity] * len(times)
        i = 0
        for rec in sorted(recs, key=_t):
            t = _t(rec)
            while i < len(times) and (times[i] < t - max_lag or left[i] == 0):
                i += 1
            if i < len(times) and times[i] <= t + skew:
                left[i] -= 1
                result.pairs.append((origs[i], rec))
            else:
                result.unmatched.append(rec)
    return result


def _t(rec: LogRecord) -> float:
    return rec.time if rec.time is not None else 0.0


def _endpoint_of(rec: LogRecord) -> str:
    return f"{rec.method or '-'} {endpoint(rec.uri)}"


# ---------------------------------------------------------------- figures


def percentile(values: Sequence[float], pct: float) -> Optional[float]:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency(records: Sequence[LogRecord]) -> Latency:
    times = [r.request_time for r in records if r.request_time is not None]
    return Latency(percentile(times, 50), percentile(times, 90), percentile(times, 99),
                   len(times))


def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else round(b - a, 6)


def latency_diff(online: Latency, target: Latency) -> Latency:
    return Latency(_diff(online.p50, target.p50), _diff(online.p90, target.p90),
                   _diff(online.p99, target.p99), min(online.samples, target.samples))


def status_mix(records: Sequence[LogRecord]) -> dict[int, int]:
    return dict(sorted(Counter(r.status for r in records if r.status is not None).items()))


def in_networks(addr: Optional[str],
                nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in nets)


def _window_filter(records: Sequence[LogRecord], window: Optional[tuple[float, float]]
                   ) -> list[LogRecord]:
    if window is None:
        return list(records)
    lo, hi = window
    return [r for r in records if r.time is not None and lo <= r.time <= hi]


def worst_endpoints(online: Sequence[LogRecord], matched: Counter[str], ratio: float,
                    limit: int) -> list[EndpointLoss]:
    per = Counter(_endpoint_of(r) for r in online)
    rows = []
    for ep, n in per.items():
        expected = n * ratio
        got = matched.get(ep, 0)
        missing = max(0, round(expected - got))
        rows.append(EndpointLoss(ep, n, got, expected, missing,
                                 100.0 * missing / expected if expected else 0.0))
    rows.sort(key=lambda e: (-e.missing, -e.loss_pct, e.endpoint))
    return [r for r in rows if r.missing > 0][:limit]


def is_error(rec: LogRecord) -> bool:
    """An answer that is the target's own failure: 5xx, 408 (timeout) or 499 (gave up)."""
    return rec.status is not None and (rec.status >= 500 or rec.status in ERROR_STATUSES)


def target_errors(records: Sequence[LogRecord]) -> dict[str, tuple[int, int]]:
    """Per endpoint with at least one error answer: (errors, answers) of the target."""
    total: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for r in records:
        ep = _endpoint_of(r)
        total[ep] += 1
        if is_error(r):
            bad[ep] += 1
    return {ep: (n, total[ep]) for ep, n in sorted(bad.items(), key=lambda x: -x[1])}


# ---------------------------------------------------------------- the ledger


def build(inp: LedgerInput, th: Thresholds = Thresholds()) -> LedgerReport:
    """Compare, attribute and judge. Pure: the same input gives the same report."""
    nets = [ipaddress.ip_network(n, strict=False) for n in inp.allowed_sources]
    online_by_host = {h: _window_filter(recs, inp.window) for h, recs in inp.online.items()}
    online = [r for recs in online_by_host.values() for r in recs]
    everything = [r for recs in inp.online.values() for r in recs]
    all_online, in_window_all = len(online), online
    parts = None if inp.selection is None else sel.split(inp.selection, everything)
    if parts is not None:      # only what the selection copies is expected at the target
        everything = [r for r in everything if id(r) in parts.kept]
        online = [r for r in online if id(r) in parts.kept]
    target_all = list(inp.target)
    copies = [r for r in target_all if not nets or in_networks(r.remote_addr, nets)]
    foreign = [r for r in _window_filter(target_all, inp.window)
               if nets and not in_networks(r.remote_addr, nets)]
    ratio = inp.sample_percent / 100.0 * inp.multiplier
    # Match against every online record given, then keep the copies of in-window originals:
    # a copy of a request made just before the window is neither matched nor excess.
    port_map = inp.port_map if ports.uses_ports(everything, copies) else None
    m = match(everything, copies, max(1, inp.multiplier), th.max_lag, th.skew, th.sort_query,
              port_map)
    in_window = {id(r) for r in online}
    pairs = [(o, t) for o, t in m.pairs if id(o) in in_window]
    matched = len(pairs)
    unmatched = _window_filter(m.unmatched, inp.window)
    excess = len(unmatched)
    target_in_window = [t for _, t in pairs] + unmatched
    # One rounding only: 15 requests at 30 % x 3 are 13.5 expected copies, not 13.4999...
    expected = len(online) * inp.sample_percent * inp.multiplier / 100.0
    missing = max(0, round(expected - matched))
    lat_on, lat_tg = latency(online), latency(target_in_window)
    by_endpoint = target_errors(target_in_window)
    errors = sum(n for n, _ in by_endpoint.values())
    slow = (lat_tg.p99 or 0.0) - (lat_on.p99 or 0.0) >= th.slow_target_seconds
    where = [f"{inp.target_address or 'target'}:{p}" for p in inp.target_ports]
    attribution = attribute(missing, inp.daemons, matched, errors, slow, where)
    copy_ratio = matched / len(online) if online else None
    sd = sampling_sd(online, inp.sample_percent, inp.multiplier)
    tolerance = max(th.ratio_tolerance * ratio, 3 * sd)
    verdict = judge(copy_ratio, ratio, tolerance, excess, expected, len(foreign),
                    inp.daemons, th)
    figures = None
    notes = _notes(inp, sd, online)
    if inp.selection is not None and parts is not None:
        figures = sel.figures(inp.selection, parts, in_window_all, unmatched,
                              counter_sum(inp.daemons, "tcpcopy", "requests_selected"),
                              counter_sum(inp.daemons, "tcpcopy", "requests_skipped"))
        verdict = _with_selection(verdict, figures, th.ratio_tolerance * expected)
        notes = sel.notes(figures, all_online) + notes
    return LedgerReport(
        online_requests=all_online,
        online_by_host={h: len(r) for h, r in online_by_host.items()},
        target_requests=len(target_in_window) + len(foreign),
        target_matched=matched,
        target_excess=excess,
        expected_ratio=ratio,
        expected_requests=expected,
        copy_ratio=copy_ratio,
        loss_pct=100.0 * missing / expected if expected else 0.0,
        excess_pct=100.0 * (excess + max(0, matched - round(expected))) / expected
        if expected else 0.0,
        worst_endpoints=worst_endpoints(online, Counter(_endpoint_of(o) for o, _ in pairs),
                                        ratio, th.worst_endpoints),
        status_online=status_mix(online),
        status_target=status_mix(target_in_window),
        latency_online=lat_on,
        latency_target=lat_tg,
        latency_diff=latency_diff(lat_on, lat_tg),
        leaks=len(foreign),
        leak_sources=dict(Counter(r.remote_addr or "-" for r in foreign).most_common(5)),
        conntrack=list(inp.conntrack),
        daemons=list(inp.daemons),
        attribution=attribution,
        verdict=verdict,
        malformed=dict(inp.malformed),
        window=inp.window,
        notes=notes,
        by_mapping=[] if port_map is None else ports.by_mapping(
            online, target_in_window, [o for o, _ in pairs], port_map, ratio),
        selection=figures,
        target_errors=by_endpoint,
    )


def _with_selection(verdict: Verdict, figures: sel.SelectionFigures,
                    allowed_excess: float) -> Verdict:
    """The selection's reasons first; a selection that cannot be applied to the log makes
    the verdict inconclusive (never a PASS)."""
    extra = sel.reasons(figures, allowed_excess)
    if not extra:
        return verdict
    return Verdict(False, extra + verdict.reasons, verdict.tolerance,
                   inconclusive=bool(figures.problems))


def judge(copy_ratio: Optional[float], expected: float, tolerance: float, excess: int,
          expected_requests: float, leaks: int, daemons: Sequence[DaemonStats],
          th: Thresholds) -> Verdict:
    reasons: list[str] = []
    if copy_ratio is None:
        reasons.append("no online requests in the window: nothing to compare")
    elif abs(copy_ratio - expected) > tolerance:
        reasons.append(f"copy ratio {copy_ratio:.4f} is off the expected {expected:.4f} by "
                       f"more than {tolerance:.4f}")
    if expected_requests and excess > th.ratio_tolerance * expected_requests:
        reasons.append(f"{excess} target requests match no online request (duplicates or "
                       "copies of copies)")
    if leaks > th.max_leaks:
        reasons.append(f"{leaks} target requests came from outside the client pool "
                       f"(allowed: {th.max_leaks})")
    for d in daemons:
        if d.state != "running":
            why = f": {d.detail}" if d.detail else ""
            reasons.append(f"{d.tool} on {d.host} is {d.state}{why}")
    return Verdict(not reasons, reasons, tolerance)


def _notes(inp: LedgerInput, sd: float, online: Sequence[LogRecord]) -> list[str]:
    notes = list(inp.notes)
    if sd:
        notes.append(f"sampling {inp.sample_percent:g} %: the copy ratio varies by "
                     f"±{sd:.4f} (1 sd) from sampling alone")
        basis = sampling_basis(online)
        if basis != "port":
            notes.append(f"the online log has no $remote_port: sampling units (client address "
                         f"and port) were counted by {basis}; clients that reuse ports (NAT, "
                         "load balancers) make the ratio vary more than that (add $remote_port "
                         "to the log_format)")
    # sessions_created counts every replica (-n); sampled_out counts packets, not sessions
    syns = counter_sum(inp.daemons, "tcpcopy", "clt_syn")
    created = counter_sum(inp.daemons, "tcpcopy", "sessions_created")
    if inp.sample_percent < 100 and syns and created is not None:
        kept = min(1.0, created / max(1, inp.multiplier) / syns)
        notes.append(f"tcpcopy kept {100.0 * kept:.1f} % of client SYNs "
                     f"(configured {inp.sample_percent:g} %)")
    for ct in inp.conntrack:
        pct = ct.used_pct
        if pct is not None and pct >= 80:
            notes.append(f"conntrack on {ct.host} is {pct:.0f} % full ({ct.count}/{ct.max})")
    for src, n in inp.malformed.items():
        if n:
            notes.append(f"{n} malformed log lines skipped in {src}")
    return notes
