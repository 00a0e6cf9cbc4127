"""Plots: series (labctl.report.series) -> `Plot`s, each an inline SVG plus the numbers drawn.

matplotlib draws with its SVG backend on a bare `Figure` (no pyplot, no global state, no
display); text stays `<text>` (readable, searchable, small), every element id is prefixed with
the plot's name (several SVGs share one HTML document), and the SVG carries an accessible
`<title>`. matplotlib is imported only when a plot is drawn: `labctl --help` and every command
that writes no report never load it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from typing import Any, Optional

from labctl.report.series import Cdf, CounterSteps, RateSeries, StatusMix

#: matplotlib's Figure and Axes (typed loosely: matplotlib is imported only when drawing)
Figure = Any
Axes = Any
SIDE_COLORS = {"online": "#1f77b4", "target": "#ff7f0e"}
STATUS_COLORS = {2: ("#2da44e", "#7ee2a8", "#116329"), 3: ("#0969da", "#80ccff"),
                 4: ("#bf8700", "#eac54f", "#9a6700"), 5: ("#cf222e", "#ff8182", "#82071e")}
OTHER_STATUS = "#8c959f"
WIDTH_IN = 9.0
#: Text as <text> (not glyph paths); ids from a fixed salt (the same data, the same SVG).
RC: Any = {"svg.fonttype": "none", "svg.hashsalt": "labctl"}
_ID = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


@dataclass(frozen=True)
class Plot:
    """One figure of a report: `name` (an id), `title`, `caption` (a sentence saying what is
    drawn and how to read it), `svg` (inline markup) and `data` (the numbers drawn, for JSON)."""

    name: str
    title: str
    caption: str
    svg: str
    data: dict[str, Any] = field(default_factory=dict)


def _figure(height: float, cols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure as MplFigure  # lazy: heavy; only reports need it

    fig = MplFigure(figsize=(WIDTH_IN, height), layout="constrained")
    axes = list(fig.subplots(1, cols, squeeze=False)[0])
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def to_svg(fig: Figure, name: str, title: str) -> str:
    """The figure as inline SVG: no XML prolog, ids prefixed with `name`, scaled to its
    container, with `<title>` and role="img" for screen readers."""
    import matplotlib  # lazy: matplotlib is heavy; only reports need it

    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "labctl"})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # Inline in HTML the namespaces are implied (and plain `href` is SVG 2): drop them and the
    # RDF metadata, so the document names no URL at all.
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text).replace("xlink:href=", "href=")
    text = _ID.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
                  rf'<svg\1 width="100%" role="img" aria-labelledby="{name}-title"'
                  rf' class="plot" data-plot="{name}"', text, count=1)
    head = text.index(">") + 1
    return f'{text[:head]}\n <title id="{name}-title">{escape(title)}</title>{text[head:]}'


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(loc="best", fontsize=9)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _marks(ax: Axes, marks: Sequence[tuple[float, str]]) -> None:
    """Vertical lines at drill steps (seconds since t0, label), one legend entry for all."""
    for i, (x, label) in enumerate(marks):
        ax.axvline(x, color="#6e7781", linestyle=":", linewidth=1,
                   label="step starts" if i == 0 else None)
        ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                    color="#57606a", xytext=(2, -10 - 10 * (i % 3)), textcoords="offset points")


def _xs(s: RateSeries) -> list[float]:
    return [x + s.bin_seconds / 2 for x in s.starts]


def rate_plot(s: RateSeries, marks: Sequence[tuple[float, str]] = ()) -> Optional[Plot]:
    """Requests per second online and at the target, bin by bin."""
    if s.empty:
        return None
    name, title = "rate", "Requests per second, online vs target"
    fig, (ax,) = _figure(3.6)
    style = {"marker": "o", "markersize": 3} if len(s.starts) <= 30 else {}
    for side, values in (("online", s.online), ("target", s.target)):
        line, = ax.plot(_xs(s), values, color=SIDE_COLORS[side], label=side, **style)
        line.set_gid(f"series-{side}")
    _marks(ax, marks)
    ax.set_ylim(0, max([*s.online, *s.target, 0.1]) * 1.15)
    _finish(ax, title, f"time since {_when(s.t0)} (s)", f"requests/s (per {s.bin_seconds} s bin)")
    caption = (f"Requests logged per second by the online hosts and by the target, in "
               f"{s.bin_seconds} s bins from {_when(s.t0)}." + _untimed(s))
    data = {"t0": s.t0, "bin_seconds": s.bin_seconds, "start_s": s.starts,
            "online_rps": s.online, "target_rps": s.target, "untimed": s.untimed}
    return Plot(name, title, caption, to_svg(fig, name, title), data)


def _untimed(s: RateSeries) -> str:
    return f" {s.untimed} records without a time are not drawn." if s.untimed else ""


def ratio_plot(s: RateSeries, marks: Sequence[tuple[float, str]] = ()) -> Optional[Plot]:
    """Target/online per bin, with the expected ratio and its tolerance band."""
    if s.empty or all(r is None for r in s.ratio):
        return None
    name, title = "ratio", "Copy ratio over time"
    fig, (ax,) = _figure(3.2)
    xs = _xs(s)
    ys = [float("nan") if r is None else r for r in s.ratio]
    style = {"marker": "o", "markersize": 3} if len(xs) <= 30 else {}
    line, = ax.plot(xs, ys, color=SIDE_COLORS["target"], label="target / online", **style)
    line.set_gid("series-ratio")
    if s.expected is not None:
        ax.axhline(s.expected, color="#1a7f37", linestyle="--", linewidth=1,
                   label=f"expected {s.expected:g}")
        if s.tolerance:
            ax.axhspan(s.expected - s.tolerance, s.expected + s.tolerance, color="#1a7f37",
                       alpha=0.12, label=f"tolerance ±{s.tolerance:.4f}")
    _marks(ax, marks)
    top = max([r for r in s.ratio if r is not None] + [(s.expected or 0) + (s.tolerance or 0)])
    ax.set_ylim(0, max(top, 0.1) * 1.15)
    _finish(ax, title, f"time since {_when(s.t0)} (s)", "copy ratio (target/online)")
    caption = ("Requests the target logged divided by those the online hosts logged, per "
               f"{s.bin_seconds} s bin (gaps: no online request in the bin). Copies arrive a "
               "little after their originals, so a bin edge can move a copy into the next bin; "
               "the ledger's ratio counts matched copies over the whole span.")
    data = {"t0": s.t0, "bin_seconds": s.bin_seconds, "start_s": s.starts, "ratio": s.ratio,
            "expected": s.expected, "tolerance": s.tolerance}
    return Plot(name, title, caption, to_svg(fig, name, title), data)


def latency_plot(cdfs: dict[str, Cdf]) -> Optional[Plot]:
    """The CDF of `$request_time` per side, in milliseconds."""
    if not any(c.samples for c in cdfs.values()):
        return None
    name, title = "latency", "Latency CDF ($request_time), online vs target"
    fig, (ax,) = _figure(3.6)
    for side, cdf in cdfs.items():
        if not cdf.samples:
            continue
        xs = [x * 1000.0 for x, _ in cdf.points]
        ys = [f * 100.0 for _, f in cdf.points]
        line, = ax.step(xs, ys, where="post", color=SIDE_COLORS.get(side),
                        label=f"{side} ({cdf.samples} requests)")
        line.set_gid(f"series-{side}")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    _finish(ax, title, "request time (ms)", "requests at or below (%)")
    parts = [f"{side} p50 {_ms(c.quantile(0.5))}, p99 {_ms(c.quantile(0.99))}"
             for side, c in cdfs.items() if c.samples]
    caption = ("Share of requests answered within a time, as nginx logged it ($request_time, "
               "millisecond resolution): " + "; ".join(parts) + ".")
    data = {side: {"samples": c.samples, "points_s_fraction": [list(p) for p in c.points]}
            for side, c in cdfs.items()}
    return Plot(name, title, caption, to_svg(fig, name, title), data)


def _ms(v: Optional[float]) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _status_color(code: int, seen: dict[int, int]) -> str:
    shades = STATUS_COLORS.get(code // 100)
    if shades is None:
        return OTHER_STATUS
    n = seen.get(code // 100, 0)
    seen[code // 100] = n + 1
    return shades[n % len(shades)]


def status_plot(mix: StatusMix) -> Optional[Plot]:
    """Per endpoint, an online and a target bar stacked by status code."""
    if mix.empty:
        return None
    name, title = "status", "Status mix per endpoint"
    fig, (ax,) = _figure(4.2)
    width = 0.38
    seen: dict[int, int] = {}
    colors = {code: _status_color(code, seen) for code in mix.codes}
    for offset, side, hatch in ((-width / 2, "online", ""), (width / 2, "target", "//")):
        xs = [i + offset for i in range(len(mix.endpoints))]
        bottom = [0] * len(mix.endpoints)
        for code in mix.codes:
            heights = mix.column(side, code)
            bars = ax.bar(xs, heights, width, bottom=bottom, color=colors[code], hatch=hatch,
                          edgecolor="white", linewidth=0.5,
                          label=str(code or "none") if side == "online" else None)
            _gid(bars, f"bars-{side}-{code}")
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(len(mix.endpoints)), [_short(e) for e in mix.endpoints],
                  rotation=20, ha="right", fontsize=8)
    _finish(ax, title, "endpoint (left bar online, right bar hatched target)", "requests",
            legend=False)
    ax.legend(title="status", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    caption = ("For each endpoint (busiest first), the requests the online hosts logged (left "
               "bar) and the target logged (right bar, hatched), stacked by HTTP status.")
    data = {"endpoints": mix.endpoints, "codes": mix.codes,
            "counts": {side: {ep: {str(c): n for c, n in per.items()}
                              for ep, per in eps.items()} for side, eps in mix.counts.items()}}
    return Plot(name, title, caption, to_svg(fig, name, title), data)


def _gid(bars: Any, prefix: str) -> None:
    """Name each bar of a bar container (`<g id="prefix-i">` in the SVG)."""
    for i, patch in enumerate(bars):
        patch.set_gid(f"{prefix}-{i}")


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def counters_plot(cs: CounterSteps) -> Optional[Plot]:
    """Engine counters per drill verify step: volumes and losses side by side."""
    if cs.empty:
        return None
    name, title = "counters", "Engine counters per verify step"
    groups = [(t, v) for t, v in (("what flowed", cs.volumes), ("what was lost", cs.losses))
              if v]
    fig, axes = _figure(3.8, len(groups))
    for ax, (sub, values) in zip(axes, groups):
        n = len(values)
        width = 0.8 / n
        for i, (counter, ys) in enumerate(values.items()):
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(cs.steps))]
            bars = ax.bar(xs, ys, width, label=counter)
            _gid(bars, f"bars-{counter.replace(' ', '-')}")
        ax.set_xticks(range(len(cs.steps)), cs.steps, fontsize=8)
        _finish(ax, sub, "verify step", "count (since the previous verify)")
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title)
    caption = ("The engine daemons' counters read by each verify step, summed per tool over "
               "the daemons, each since the previous verify's mark (the first: since `up`). "
               "Losses are drawn only when some step counted one.")
    data = {"steps": cs.steps, "volumes": cs.volumes, "losses": cs.losses}
    return Plot(name, title, caption, to_svg(fig, name, title), data)


#: compare sides, in drawing order, and their colors
COMPARE_SIDES = {"online": "#1f77b4", "baseline": "#2da44e", "baseline2": "#7ee2a8",
                 "candidate": "#cf222e"}


def compare_latency_plot(rows: Sequence[tuple[str, dict[str, tuple[float, float, float]]]],
                         stat: str = "p90") -> Optional[Plot]:
    """Per endpoint (`rows`: endpoint, side -> (value, low, high) ms), one dot per side with
    its confidence interval as a bar: a candidate slower beyond the noise stands out."""
    rows = [r for r in rows if r[1]]
    if not rows:
        return None
    name, title = "compare-latency", f"Latency {stat} per endpoint, by side"
    fig, (ax,) = _figure(0.9 + 0.45 * len(rows))
    sides = [s for s in COMPARE_SIDES if any(s in per for _e, per in rows)]
    step = 0.8 / max(1, len(sides))
    for k, side in enumerate(sides):
        ys, xs, lo, hi = [], [], [], []
        for i, (_e, per) in enumerate(rows):
            if side in per:
                value, low, high = per[side]
                ys.append(i - 0.4 + step * (k + 0.5))
                xs.append(value)
                lo.append(max(0.0, value - low))
                hi.append(max(0.0, high - value))
        bars = ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", color=COMPARE_SIDES[side],
                           label=side, capsize=2, markersize=4)
        bars[0].set_gid(f"dots-{side}")
    ax.set_yticks(range(len(rows)), [_short(e, 36) for e, _p in rows], fontsize=8)
    ax.invert_yaxis()
    _finish(ax, title, f"{stat} response time (ms), bars: 99 % bootstrap interval", "endpoint")
    caption = (f"The {stat} of $request_time on each side for the same matched requests, "
               "with its bootstrap confidence interval. Online vs baseline shows the noise of "
               "one version run twice; a candidate dot beyond it is a latency change.")
    data = {"stat": stat, "endpoints": [
        {"endpoint": e, "sides": {s: {"value": v, "low": lo_, "high": hi_}
                                  for s, (v, lo_, hi_) in per.items()}} for e, per in rows]}
    return Plot(name, title, caption, to_svg(fig, name, title), data)


def compare_errors_plot(rows: Sequence[tuple[str, dict[str, float]]]) -> Optional[Plot]:
    """Per endpoint (`rows`: endpoint, side -> 5xx share 0..1), grouped bars by side."""
    rows = [r for r in rows if r[1]]
    if not rows:
        return None
    name, title = "compare-errors", "5xx share per endpoint, by side"
    fig, (ax,) = _figure(3.8)
    sides = [s for s in COMPARE_SIDES if any(s in per for _e, per in rows)]
    width = 0.8 / max(1, len(sides))
    for k, side in enumerate(sides):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(rows))]
        heights = [100.0 * per.get(side, 0.0) for _e, per in rows]
        bars = ax.bar(xs, heights, width, color=COMPARE_SIDES[side], label=side)
        _gid(bars, f"bars-{side}")
    ax.set_xticks(range(len(rows)), [_short(e) for e, _p in rows], rotation=20, ha="right",
                  fontsize=8)
    _finish(ax, title, "endpoint", "5xx answers (% of matched requests)")
    caption = ("The share of server errors each side answered to the same matched requests. "
               "Bars that differ only on the candidate are what the errors flag is about.")
    data = {"endpoints": [{"endpoint": e, "share": per} for e, per in rows]}
    return Plot(name, title, caption, to_svg(fig, name, title), data)
