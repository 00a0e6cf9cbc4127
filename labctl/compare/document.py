"""The comparison as documents (pure, except `write_report`, which writes them).

- `document(report)`: the `labctl compare --json` / report.json document, schema
  `labctl.compare/1` (keys are only ever added): `schema`; `verdict` {passed, reasons,
  inconclusive}; `hosts` {side: host}; `noise` ("online vs baseline" | "baseline vs
  baseline2"); `requests` {side: int}; `matched` (int); `unmatched`/`foreign` {side: int};
  `flags` [{endpoint, kind (errors|status|latency|body_size), direction (worse|better|changed),
  regression, summary, stat, baseline, candidate, shift, noise, low, high, p_value,
  examples [uri]}]; `endpoints` [{endpoint, matched, judged, noise, sides {side: {side,
  requests, matched, status {"200": int}, error_share, size_mean, size_median, p50_ms, p90_ms,
  p99_ms {value, low, high}}}, latency_shift_ms {p50, p90: {value, low, high}}, flags}];
  `thresholds` {...}; `window` [start, end]|null; `malformed` {source: int}; `notes` [str].
  Latencies in ms, sizes in bytes, shares 0..1.
- `markdown(report)`: report.md, for people.
- `write_report(report, directory)`: both files; an HTML report can be added beside them from
  `document(report)` (the same data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from labctl.compare.stats import Interval
from labctl.compare.types import CompareReport, EndpointCompare
from labctl.errors import LabctlError
from labctl.plain import plain

SCHEMA = "labctl.compare/1"


def document(report: CompareReport) -> dict[str, Any]:
    """The JSON document (shape in the module docstring)."""
    data = plain(report)
    assert isinstance(data, dict)
    return {"schema": SCHEMA, **data}


def to_json(report: CompareReport) -> str:
    return json.dumps(document(report), indent=2, sort_keys=True)


def verdict_word(report: CompareReport) -> str:
    """PASS, REGRESSION or INCONCLUSIVE."""
    if report.verdict.inconclusive:
        return "INCONCLUSIVE"
    return "PASS" if report.verdict.passed else "REGRESSION"


def ms(iv: Interval, ci: bool = False) -> str:
    """`52 ms` (with `ci`: `52 ms [48..57]`); `-` without data."""
    if iv.value is None:
        return "-"
    text = f"{iv.value:.0f} ms"
    if ci and iv.low is not None and iv.high is not None:
        text += f" [{iv.low:.0f}..{iv.high:.0f}]"
    return text


def share(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def status_mix(mix: dict[int, int]) -> str:
    total = sum(mix.values())
    if not total:
        return "-"
    return " ".join(f"{code}:{100 * n / total:.0f}%" for code, n in
                    sorted(mix.items(), key=lambda kv: -kv[1])[:3])


def _row(e: EndpointCompare, side: str) -> str:
    s = e.sides[side]
    size = "-" if s.size_median is None else f"{s.size_median:.0f}"
    return (f"| {side} | {s.requests} | {status_mix(s.status)} | {share(s.error_share)} | "
            f"{size} | {ms(s.p50_ms, True)} | {ms(s.p90_ms, True)} | {ms(s.p99_ms)} |")


def markdown(report: CompareReport) -> str:
    """report.md: verdict, flags with examples, one table per endpoint, notes."""
    hosts = "; ".join(f"{side}: {host}" for side, host in report.hosts.items())
    lines = [f"# labctl compare: {verdict_word(report)}", "",
             f"{hosts}. {report.matched} requests matched on every side; noise reference "
             f"{report.noise}.", ""]
    lines += [f"- {r}" for r in report.verdict.reasons] + [""]
    lines += ["## Flags", ""]
    if not report.flags:
        lines += ["None: the candidate answers like the baseline, within the noise.", ""]
    for f in report.flags:
        tag = "regression" if f.regression else f.direction
        lines.append(f"- **{f.endpoint}** ({f.kind}, {tag}): {f.summary}")
        lines += [f"  - `{uri}`" for uri in f.examples]
    lines += ["", "## Endpoints", ""]
    for e in sorted(report.endpoints, key=lambda e: not e.flags):  # flagged first
        judged = "" if e.judged else " (not judged: too few requests)"
        lines += [f"### {e.endpoint}{judged}", "",
                  "| side | requests | status | 5xx | body (median B) | p50 | p90 | p99 |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [_row(e, side) for side in e.sides] + [""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def write_report(report: CompareReport, directory: Path) -> list[Path]:
    """Write report.json and report.md into `directory` (created); the paths written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        out = [directory / "report.json", directory / "report.md"]
        out[0].write_text(to_json(report) + "\n", encoding="utf-8")
        out[1].write_text(markdown(report), encoding="utf-8")
    except OSError as exc:
        raise LabctlError(f"cannot write the compare report to {directory}: "
                          f"{exc.strerror or exc}", hint="give --report a writable directory"
                          ) from None
    return out
