"""Rendering of `labctl compare`: a rich table per endpoint for people (flagged rows
highlighted), the flags with their examples, and the JSON document
(`labctl.compare.document`, schema `labctl.compare/1`) for pipelines.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from labctl.compare import document as doc
from labctl.compare.types import CompareReport, EndpointCompare

#: Endpoints shown in the table at most (flagged ones always); the JSON has them all.
MAX_ROWS = 40


def _flags(e: EndpointCompare, flags: str) -> str:
    """The flags, and the candidate's p90 shift with its interval."""
    iv = e.latency_shift_ms.get("p90")
    if iv is None or iv.value is None or iv.low is None or iv.high is None:
        return flags
    shift = f"p90 {iv.value:+.0f} ms [{iv.low:+.0f}..{iv.high:+.0f}]"
    return f"{flags}\n{shift}" if flags else shift


def endpoints_table(r: CompareReport) -> Table:
    t = Table(title=f"baseline vs candidate per endpoint (noise: {r.noise})",
              title_justify="left")
    for col in ("endpoint", "matched", "side", "status", "5xx", "body B", "p50 ms", "p90 ms",
                "p99 ms", "flags"):
        t.add_column(col, justify="left" if col in ("endpoint", "side", "status", "flags")
                     else "right")
    shown = [e for e in r.endpoints if e.flags] + [e for e in r.endpoints if not e.flags]
    for e in shown[:MAX_ROWS]:
        style = ("bold red" if any(f.regression for f in e.flags) else "yellow") \
            if e.flags else ("dim" if not e.judged else "")
        flags = ", ".join(f"{f.kind} {f.direction}" for f in e.flags) or (
            "" if e.judged else "too few to judge")
        for i, (side, s) in enumerate(e.sides.items()):
            size = "-" if s.size_median is None else f"{s.size_median:.0f}"
            first = i == 0
            t.add_row(e.endpoint if first else "", str(e.matched) if first else "", side,
                      doc.status_mix(s.status), doc.share(s.error_share), size,
                      doc.ms(s.p50_ms, True).replace(" ms", ""),
                      doc.ms(s.p90_ms, True).replace(" ms", ""),
                      doc.ms(s.p99_ms).replace(" ms", ""), _flags(e, flags) if first else "",
                      style=style, end_section=i == len(e.sides) - 1)
    if len(shown) > MAX_ROWS:
        t.caption = f"{len(shown) - MAX_ROWS} more endpoints in --json / --report"
    return t


def flags_view(r: CompareReport) -> Text:
    out = Text()
    for f in r.flags:
        style = "bold red" if f.regression else "yellow"
        out.append(f"{f.endpoint}", style=style)
        out.append(f"  {f.kind}: {f.summary}\n")
        for uri in f.examples:
            out.append(f"    e.g. {uri}\n", style="dim")
    return out


def verdict_view(r: CompareReport) -> Text:
    word = doc.verdict_word(r)
    style = {"PASS": "bold green", "REGRESSION": "bold red"}.get(word, "bold yellow")
    text = Text(f"verdict: {word}", style=style)
    hosts = "; ".join(f"{side}: {host}" for side, host in r.hosts.items())
    text.append(f"  ({r.matched} requests matched on every side; {hosts})", style="")
    for note in r.notes:
        text.append(f"\nnote: {note}", style="dim")
    return text


def compare_view(r: CompareReport) -> Group:
    parts: list[Table | Text] = [endpoints_table(r)]
    if r.flags:
        parts.append(flags_view(r))
    parts.append(verdict_view(r))
    return Group(*parts)
