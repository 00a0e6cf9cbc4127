"""Compare reports (`labctl compare --report DIR`): a `CompareReport` -> report.html (the
verdict, the flags, the endpoint table with flagged rows highlighted, plots inline), report.md
and report.json (`labctl.compare/1`, the numbers behind each plot under `plots`).

Pure rendering plus writing the files. Latency and error plots are drawn from the comparison's
own per-endpoint figures (the judged endpoints, busiest first, at most MAX_ROWS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from labctl.compare import document as doc
from labctl.compare.types import CompareReport, EndpointCompare
from labctl.plain import dumps
from labctl.report import figures as F
from labctl.report import plots as P
from labctl.report.render import render, when, write_files

MAX_ROWS = 12


def _rows(report: CompareReport) -> list[EndpointCompare]:
    judged = [e for e in report.endpoints if e.judged]
    return sorted(judged, key=lambda e: (not e.flags, -e.matched))[:MAX_ROWS]


def plots(report: CompareReport) -> F.Plots:
    rows = _rows(report)
    lat = [(e.endpoint, {side: (f.p90_ms.value, f.p90_ms.low or f.p90_ms.value,
                                f.p90_ms.high or f.p90_ms.value)
                         for side, f in e.sides.items() if f.p90_ms.value is not None})
           for e in rows]
    errors = [(e.endpoint, {side: f.error_share for side, f in e.sides.items()
                            if f.error_share is not None}) for e in rows]
    out = F.Plots()
    out.add("compare-latency", P.compare_latency_plot(lat))
    out.add("compare-errors", P.compare_errors_plot(errors)
            if any(v for _e, per in errors for v in per.values()) else None)
    return out


def view(report: CompareReport, drawn: F.Plots) -> dict[str, Any]:
    """What the template shows, as plain values."""
    window = "-" if report.window is None else (f"{when(report.window[0])} to "
                                                f"{when(report.window[1])}")
    endpoints = []
    for e in sorted(report.endpoints, key=lambda e: (not e.flags, -e.matched)):
        for side, f in e.sides.items():
            endpoints.append({
                "flagged": bool(e.flags), "cells": (
                    e.endpoint, side, f.requests, doc.status_mix(f.status),
                    doc.share(f.error_share),
                    "-" if f.size_median is None else f"{f.size_median:.0f}",
                    doc.ms(f.p50_ms, True), doc.ms(f.p90_ms, True), doc.ms(f.p99_ms))})
    return {"verdict": doc.verdict_word(report), "reasons": report.verdict.reasons,
            "hosts": list(report.hosts.items()), "noise": report.noise,
            "matched": report.matched, "window": window,
            "flags": [{"endpoint": f.endpoint, "kind": f.kind,
                       "tag": "regression" if f.regression else f.direction,
                       "summary": f.summary, "examples": f.examples} for f in report.flags],
            "endpoints": endpoints, "notes": report.notes, "plots": drawn.view()}


def write_report(report: CompareReport, directory: Union[str, Path]) -> list[Path]:
    """Write report.html, report.md and report.json into `directory` (created)."""
    drawn = plots(report)
    data = {**doc.document(report), "plots": drawn.as_json()}
    return write_files(directory, {
        "report.html": render("compare.html.j2", c=view(report, drawn)),
        "report.md": doc.markdown(report),
        "report.json": dumps(data) + "\n"})
