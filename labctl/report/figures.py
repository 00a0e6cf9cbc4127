"""Which plots a report gets from the data it has (pure apart from drawing): the traffic plots
from access-log records, the counter plot from a drill's verify steps, and the plots' numbers
as JSON values. A plot the data cannot support (no records, no counters) is left out and named
in `missing` so a report can say why it is not there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from labctl.report import plots as P
from labctl.report import series as S

#: Plot name -> what it needs, shown when the data did not support it.
NEEDS = {"rate": "access-log records with a time",
         "ratio": "online requests with a time",
         "latency": "records with $request_time (the `labctl` log format logs it)",
         "status": "access-log records",
         "counters": "engine counters read by verify steps",
         "compare-latency": "judged endpoints with $request_time on every side",
         "compare-errors": "a 5xx answer on some side (there was none)"}


@dataclass
class Plots:
    """The drawn plots in order, and the names of those left out (see NEEDS)."""

    drawn: list[P.Plot] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, name: str, plot: Optional[P.Plot]) -> None:
        if plot is None:
            self.missing.append(name)
        else:
            self.drawn.append(plot)

    def view(self) -> dict[str, Any]:
        """What the templates show: each plot's name, title, caption, SVG; what is missing."""
        return {"drawn": [{"name": p.name, "title": p.title, "caption": p.caption,
                           "svg": p.svg} for p in self.drawn],
                "missing": [(name, NEEDS.get(name, "")) for name in self.missing]}

    def as_json(self) -> dict[str, Any]:
        """The numbers behind each plot, keyed by plot name (no SVG)."""
        return {p.name: {"title": p.title, "caption": p.caption, "data": p.data}
                for p in self.drawn}


def traffic_plots(traffic: S.Traffic, t0: Optional[float] = None,
                  expected: Optional[float] = None, tolerance: Optional[float] = None,
                  marks: Sequence[tuple[float, str]] = (), into: Optional[Plots] = None
                  ) -> Plots:
    """Rates, copy ratio, latency CDFs and status mix of `traffic`."""
    out = into if into is not None else Plots()
    rates = S.rate_series(traffic, t0, expected, tolerance)
    out.add("rate", P.rate_plot(rates, marks))
    out.add("ratio", P.ratio_plot(rates, marks))
    out.add("latency", P.latency_plot(S.latency_cdfs(traffic)))
    out.add("status", P.status_plot(S.status_mix(traffic)))
    return out
