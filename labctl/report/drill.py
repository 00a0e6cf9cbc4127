"""Drill reports: a `DrillResult` -> Markdown, self-contained HTML and JSON in a directory.

`view()` turns the result into plain rows and strings (what both templates show) and the plots
(`plots()`: the traffic of every verify step as one timeline with the steps marked, and the
engine counters per verify step); the jinja2 templates live in templates/report/. Only counts,
addresses, methods, URIs and lengths are shown: payloads are never part of a result, so never
of a report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Union

from labctl.drill.model import DrillResult, StepResult
from labctl.plain import dumps, plain
from labctl.report import figures as F
from labctl.report import plots as P
from labctl.report import series as S
from labctl.report.ledger import ledger_view
from labctl.report.render import render, when, write_files

FILES = ("report.md", "report.html", "result.json")


def default_dir(name: str, now: Optional[float] = None, base: Union[str, Path] = ".") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else
                                                           time.time()))
    return Path(base) / "labctl-reports" / f"{name}-{stamp}"


def step_view(s: StepResult) -> dict[str, Any]:
    return {"index": s.index, "kind": s.kind, "title": s.title, "status": s.status,
            "started": when(s.started_at)[11:19] if s.started_at else "-",
            "duration": f"{s.duration:.1f} s",
            "details": [(k, _detail(v)) for k, v in s.details.items()],
            "checks": [(c.name, c.ok, c.detail) for c in s.checks], "error": s.error,
            "ledger": ledger_view(s.ledger) if s.ledger is not None else None}


def _detail(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={n}" for k, n in v.items()) or "-"
    return str(v)


# ---------------------------------------------------------------- plots


def traffic(result: DrillResult) -> S.Traffic:
    """Every verify step's records as one timeline (each step read only what followed the
    previous one, so they do not overlap)."""
    online = [r for s in result.steps if s.records for r in s.records[0]]
    target = [r for s in result.steps if s.records for r in s.records[1]]
    return S.Traffic(online, target)


def step_marks(result: DrillResult, t0: float) -> list[tuple[float, str]]:
    """(seconds since t0, "index kind") of every step that ran, but waits (they change
    nothing; their marks would only crowd the ones that do)."""
    return [(s.started_at - t0, f"{s.index} {s.kind}") for s in result.steps
            if s.started_at and s.started_at >= t0 and s.kind != "wait"]


def plots(result: DrillResult) -> F.Plots:
    """The drill's plots: its traffic over the whole run, steps marked, and the engine
    counters of each verify step."""
    ledgers = [s.ledger for s in result.steps if s.ledger is not None]
    first = ledgers[0] if ledgers else None
    t0 = result.started_at or None
    out = F.traffic_plots(traffic(result), t0,
                          first.expected_ratio if first else None,
                          first.verdict.tolerance if first else None,
                          step_marks(result, t0) if t0 else ())
    counters = S.counter_steps([(f"step {s.index}", s.ledger.daemons) for s in result.steps
                                if s.ledger is not None])
    out.add("counters", P.counters_plot(counters))
    return out


def view(result: DrillResult, drawn: Optional[F.Plots] = None) -> dict[str, Any]:
    """Everything the templates show, as plain values (pure apart from drawing the plots,
    which happens here unless `drawn` is given)."""
    return {
        "name": result.name, "description": result.description.strip(),
        "source": result.source, "runbook": result.runbook_text.rstrip(),
        "lab": result.lab or "-", "topology": result.topology or "-",
        "inventory": result.inventory or "-",
        "engine": [(k, str(v)) for k, v in result.engine.items()],
        "started": when(result.started_at), "finished": when(result.finished_at),
        "duration": f"{result.duration:.1f} s", "verdict": result.verdict,
        "passed": result.passed, "reasons": result.reasons,
        "steps": [step_view(s) for s in result.steps],
        "cleanup": [(c.action, c.ok, c.detail) for c in result.cleanup],
        "kept": result.kept,
        "plots": (drawn if drawn is not None else plots(result)).view(),
    }


def render_markdown(result: DrillResult, drawn: Optional[F.Plots] = None) -> str:
    return render("drill.md.j2", v=view(result, drawn))


def render_html(result: DrillResult, drawn: Optional[F.Plots] = None) -> str:
    return render("drill.html.j2", v=view(result, drawn))


def to_json(result: DrillResult, drawn: Optional[F.Plots] = None) -> str:
    """The machine-readable result (also what `--json` prints); with `drawn`, the numbers
    behind the report's plots under `plots`."""
    data: dict[str, Any] = {
        "name": result.name, "verdict": result.verdict, "passed": result.passed,
        "reasons": result.reasons, "report_dir": result.report_dir,
        "lab": result.lab, "topology": result.topology, "inventory": result.inventory,
        "started_at": result.started_at, "finished_at": result.finished_at,
        "engine": result.engine, "steps": [plain(s.json_fields()) for s in result.steps],
        "cleanup": result.cleanup, "interrupted": result.interrupted, "kept": result.kept,
        "error": result.error}
    if drawn is not None:
        data["plots"] = drawn.as_json()
    return dumps(data)


def write_report(result: DrillResult, directory: Union[str, Path]) -> list[Path]:
    """Write report.md, report.html and result.json into `directory` (created)."""
    result.report_dir = str(directory)
    drawn = plots(result)
    return write_files(directory, {
        "report.md": render_markdown(result, drawn),
        "report.html": render_html(result, drawn),
        "result.json": to_json(result, drawn) + "\n"})
