"""Drill reports: a `DrillResult` -> Markdown, self-contained HTML and JSON in a directory.

`view()` is pure and turns the result into plain rows and strings (what both templates show);
the jinja2 templates live in templates/report/. Only counts, addresses, methods, URIs and
lengths are shown: payloads are never part of a result, so never of a report.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import jinja2

from labctl.drill.model import DrillResult, StepResult
from labctl.plain import dumps
from labctl.verify.ledger import LedgerReport

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "report"
ENGINE_KEYS = ("captured", "kernel_drops", "malformed", "sampled_out", "sessions_created",
               "sessions_shed", "sessions_no_synack", "sessions_no_intercept",
               "sessions_timeout", "requests_sent",
               "send_errors", "retransmit", "reconnect", "channel_reconnects", "resp_routed",
               "resp_unrouted", "clients_accepted")
FILES = ("report.md", "report.html", "result.json")


def default_dir(name: str, now: Optional[float] = None, base: Union[str, Path] = ".") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else
                                                           time.time()))
    return Path(base) / "labctl-reports" / f"{name}-{stamp}"


def _when(t: float) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(v: Optional[float], digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f} %"


def ledger_view(r: LedgerReport) -> dict[str, Any]:
    """The verify ledger as tables of strings (pure)."""
    hosts = ", ".join(f"{h} {n}" for h, n in r.online_by_host.items())
    summary = [
        ("online requests", f"{r.online_requests} ({hosts})" if hosts else str(
            r.online_requests)),
        ("target requests", f"{r.target_requests} (matched {r.target_matched}, unmatched "
                            f"{r.target_excess}, foreign {r.leaks})"),
        ("expected ratio", f"{r.expected_ratio:.4f} ({r.expected_requests:.0f} copies)"),
        ("copy ratio", _num(r.copy_ratio, 4)),
        ("loss / excess", f"{_pct(r.loss_pct)} / {_pct(r.excess_pct)}"),
        ("tolerance", f"±{r.verdict.tolerance:.4f}"),
    ]
    att = r.attribution
    attribution = [(b.name, str(b.requests), b.evidence) for b in att.buckets]
    attribution.append(("unexplained", str(att.unexplained),
                        "no counter accounts for these" if att.unexplained else ""))
    codes = sorted(set(r.status_online) | set(r.status_target))
    status = [(str(c), str(r.status_online.get(c, 0)), str(r.status_target.get(c, 0)))
              for c in codes]
    latency = [(p, _num(getattr(r.latency_online, p)), _num(getattr(r.latency_target, p)),
                _num(getattr(r.latency_diff, p))) for p in ("p50", "p90", "p99")]
    engine = []
    for d in r.daemons:
        figures = ", ".join(f"{k}={d.counters[k]}" for k in ENGINE_KEYS if k in d.counters)
        engine.append((d.host, d.tool + (" (since the mark)" if d.baseline_at is not None else ""),
                       d.state, figures or d.detail))
    for c in r.conntrack:
        engine.append((c.host, "conntrack", _pct(c.used_pct), f"now {c.count}/{c.max}"))
    endpoints = [(e.endpoint, str(e.online), str(e.target), str(e.missing), _pct(e.loss_pct))
                 for e in r.worst_endpoints]
    return {"summary": summary, "missing": att.missing, "attribution": attribution,
            "status": status, "latency": latency, "engine": engine, "endpoints": endpoints,
            "passed": r.verdict.passed, "reasons": list(r.verdict.reasons),
            "notes": list(r.notes)}


def step_view(s: StepResult) -> dict[str, Any]:
    return {"index": s.index, "kind": s.kind, "title": s.title, "status": s.status,
            "started": _when(s.started_at)[11:19] if s.started_at else "-",
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


def view(result: DrillResult) -> dict[str, Any]:
    """Everything the templates show, as plain values (pure)."""
    return {
        "name": result.name, "description": result.description.strip(),
        "source": result.source, "runbook": result.runbook_text.rstrip(),
        "lab": result.lab or "-", "topology": result.topology or "-",
        "inventory": result.inventory or "-",
        "engine": [(k, str(v)) for k, v in result.engine.items()],
        "started": _when(result.started_at), "finished": _when(result.finished_at),
        "duration": f"{result.duration:.1f} s", "verdict": result.verdict,
        "passed": result.passed, "reasons": result.reasons,
        "steps": [step_view(s) for s in result.steps],
        "cleanup": [(c.action, c.ok, c.detail) for c in result.cleanup],
        "kept": result.kept,
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                              trim_blocks=True, lstrip_blocks=True)


def render_markdown(result: DrillResult) -> str:
    return _env().get_template("drill.md.j2").render(v=view(result), md=_md_cell)


def render_html(result: DrillResult) -> str:
    return _env().get_template("drill.html.j2").render(v=view(result))


def to_json(result: DrillResult) -> str:
    """The machine-readable result (also what `--json` prints)."""
    data = {"name": result.name, "verdict": result.verdict, "passed": result.passed,
            "reasons": result.reasons, "report_dir": result.report_dir,
            "lab": result.lab, "topology": result.topology, "inventory": result.inventory,
            "started_at": result.started_at, "finished_at": result.finished_at,
            "engine": result.engine, "steps": result.steps, "cleanup": result.cleanup,
            "interrupted": result.interrupted, "kept": result.kept, "error": result.error}
    return dumps(data)


def _md_cell(text: Any) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_report(result: DrillResult, directory: Union[str, Path]) -> list[Path]:
    """Write report.md, report.html and result.json into `directory` (created)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    result.report_dir = str(out)
    texts = {"report.md": render_markdown(result), "report.html": render_html(result),
             "result.json": to_json(result) + "\n"}
    paths = []
    for name, text in texts.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
