"""The four checks of an endpoint (pure): each compares candidate vs baseline over the matched
rows, measures the same difference between the two sides that run one version (the noise
pair), and returns a `Flag` only when the difference beats that noise by the inventory's
minimum and its test (two-proportion z-test, or a bootstrap interval excluding 0) holds.

- errors: share of 5xx responses; minimum `error_share` (absolute, e.g. 0.02 = 2 points).
- status: share of requests whose status differs, 5xx left out (errors covers them);
  minimum `error_share`.
- body_size: among requests answered with the same status on both sides, the share whose
  body size differs; minimum `size_share`.
- latency: shift of p50 and p90 ($request_time); minimum `latency_ms` above the noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Optional

from labctl.compare.stats import Interval, median, two_proportion_p
from labctl.compare.types import BASELINE, CANDIDATE, Flag, Row, Thresholds
from labctl.verify.logparse import LogRecord

Pair = tuple[str, str]
CB: Pair = (BASELINE, CANDIDATE)


def _pct(share: float) -> str:
    return f"{100 * share:.0f} %" if share == 0 or share >= 0.01 else f"{100 * share:.2f} %"


def _is_error(rec: Optional[LogRecord]) -> bool:
    return rec is not None and rec.status is not None and rec.status >= 500


def _both(rows: Sequence[Row], pair: Pair) -> list[tuple[LogRecord, LogRecord]]:
    out = []
    for row in rows:
        a, b = row.side(pair[0]), row.side(pair[1])
        if a is not None and b is not None:
            out.append((a, b))
    return out


def _examples(rows: Sequence[tuple[LogRecord, LogRecord]], limit: int) -> list[str]:
    """Distinct URIs of the candidates' originals, in order."""
    seen: list[str] = []
    for base, _cand in rows:
        uri = base.uri or "-"
        if uri not in seen:
            seen.append(uri)
        if len(seen) >= limit:
            break
    return seen


def _errors(rows: Sequence[Row], pair: Pair) -> tuple[int, int, int]:
    """(5xx on the first side, 5xx on the second, rows with both) of a pair."""
    both = _both(rows, pair)
    return (sum(1 for a, _ in both if _is_error(a)), sum(1 for _, b in both if _is_error(b)),
            len(both))


def errors(ep: str, rows: Sequence[Row], noise: Pair, th: Thresholds) -> Optional[Flag]:
    xb, xc, n = _errors(rows, CB)
    na, nb, nn = _errors(rows, noise)
    if not n:
        return None
    sb, sc = xb / n, xc / n
    noise_diff = abs(nb - na) / nn if nn else 0.0
    p = two_proportion_p(xc, n, xb, n)
    diff = sc - sb
    if p >= th.alpha or abs(diff) < noise_diff + th.error_share:
        return None
    worse = diff > 0
    shown = [(b, c) for b, c in _both(rows, CB) if _is_error(c) != _is_error(b)
             and _is_error(c) == worse]
    summary = (f"5xx {_pct(sc)} vs {_pct(sb)} ({100 * diff:+.1f} points, "
               f"p={p:.1g}; noise {_pct(noise_diff)})")
    return Flag(ep, "errors", "worse" if worse else "better", worse, summary, "5xx share",
                sb, sc, diff, noise_diff, p_value=p, examples=_examples(shown, th.examples))


def _differs(pairs: Sequence[tuple[LogRecord, LogRecord]], kind: str
             ) -> list[tuple[LogRecord, LogRecord]]:
    if kind == "status":
        return [(a, b) for a, b in pairs if a.status != b.status]
    return [(a, b) for a, b in pairs if a.body_bytes_sent != b.body_bytes_sent]


def _comparable(rows: Sequence[Row], pair: Pair, kind: str
                ) -> list[tuple[LogRecord, LogRecord]]:
    """status: pairs without a 5xx on either side; body_size: pairs with one status and a
    logged size on both sides."""
    both = _both(rows, pair)
    if kind == "status":
        return [(a, b) for a, b in both if not _is_error(a) and not _is_error(b)]
    return [(a, b) for a, b in both if a.status == b.status
            and a.body_bytes_sent is not None and b.body_bytes_sent is not None]


def differs(ep: str, rows: Sequence[Row], noise: Pair, th: Thresholds,
            kind: str) -> Optional[Flag]:
    """The status or body_size check (see the module docstring)."""
    pairs = _comparable(rows, CB, kind)
    noise_pairs = _comparable(rows, noise, kind)
    if not pairs:
        return None
    diff_cb, diff_noise = _differs(pairs, kind), _differs(noise_pairs, kind)
    share = len(diff_cb) / len(pairs)
    share_noise = len(diff_noise) / len(noise_pairs) if noise_pairs else 0.0
    minimum = th.error_share if kind == "status" else th.size_share
    p = two_proportion_p(len(diff_cb), len(pairs), len(diff_noise), len(noise_pairs))
    if p >= th.alpha or share - share_noise < minimum:
        return None
    if kind == "status":
        (was, now), times = Counter((a.status, b.status) for a, b in diff_cb).most_common(1)[0]
        detail = f"most often {was} -> {now}, {times}x"
    else:
        delta = median([float((b.body_bytes_sent or 0) - (a.body_bytes_sent or 0))
                        for a, b in diff_cb]) or 0.0
        detail = f"candidate median {delta:+.0f} B"
    what = "status" if kind == "status" else "body size"
    summary = (f"{what} differs in {_pct(share)} of matched requests ({detail}; "
               f"noise {_pct(share_noise)})")
    return Flag(ep, kind, "changed", True, summary, "differs share", 0.0, share, share,
                share_noise, p_value=p, examples=_examples(diff_cb, th.examples))


def latency(ep: str, rows: Sequence[Row], shifts: dict[str, Interval],
            noise: dict[str, float], points: dict[str, tuple[float, float]],
            th: Thresholds) -> Optional[Flag]:
    """`shifts[stat]`: candidate - baseline with its interval; `noise[stat]`: the noise
    pair's |difference|; `points[stat]`: (baseline, candidate) values, all in ms."""
    hits = []
    for stat, shift in shifts.items():
        if shift.value is None or not shift.excludes_zero():
            continue
        if abs(shift.value) >= noise.get(stat, 0.0) + th.latency_ms:
            hits.append(stat)
    if not hits:
        return None
    top = max(hits, key=lambda s: abs(shifts[s].value or 0.0))
    level = f"{100 * (1 - th.alpha):g} % CI"
    parts = [_latency_text(s, shifts[s], noise.get(s, 0.0), level if s == top else "CI")
             for s in [top, *[h for h in hits if h != top]]]
    worse = (shifts[top].value or 0.0) > 0
    base, cand = points[top]
    ordered = sorted(_both(rows, CB), key=lambda p: (p[1].request_time or 0.0) -
                     (p[0].request_time or 0.0), reverse=worse)
    s = shifts[top]
    return Flag(ep, "latency", "worse" if worse else "better", worse,
                "candidate " + "; ".join(parts), f"{top}_ms", base, cand, s.value or 0.0,
                noise.get(top, 0.0), s.low, s.high, examples=_examples(ordered, th.examples))


def _latency_text(stat: str, s: Interval, noise: float, level: str) -> str:
    return (f"{stat} {s.value or 0:+.0f} ms ({level} {s.low or 0:+.0f}..{s.high or 0:+.0f} ms; "
            f"noise {noise:.0f} ms)")
