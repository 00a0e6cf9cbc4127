"""Rich tables and JSON for findings, plans, `up`, `status` and `down` reports (pure: no I/O).

Every function returns a renderable or a JSON-able dict; the CLI prints them.
"""

from __future__ import annotations

import shlex
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.metrics import prometheus_text
from labctl.cli.render.findings import findings_renderable
from labctl.hosts.daemons import KEY_COUNTERS, DaemonStatus
from labctl.model import Change, Plan
from labctl.up.down import DownReport, StatusReport
from labctl.up.run import UpReport

STATUS_STYLE = {"applied": "green", "noop": "dim", "failed": "bold red", "undone": "cyan",
                "undo-failed": "bold red", "planned": "yellow"}


def plan_table(plan: Plan) -> Table:
    """Every change in order; a daemon row shows its engine flags and its readiness probe."""
    table = Table(title=f"plan for lab {plan.lab}")
    for col in ("#", "host", "step", "kind", "change", "guarded / ready when"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(plan.changes, 1):
        table.add_row(str(i), c.host, c.step, c.kind.value, change_text(c), change_check(c))
    if not plan.changes:
        table.add_row("-", "*", "-", "-", "nothing to change", "")
    return table


def change_text(change: Change) -> str:
    if change.daemon is None:
        return change.description
    d = change.daemon
    workers = f"{d.workers} worker" + ("s" if d.workers != 1 else "")
    return f"start {d.name} under {d.runtime}, {workers} (command line below)"


def daemon_commands(plan: Plan) -> RenderableType:
    """Each daemon's full command line, one unbroken line each: a table cell would fold a
    long flag (`-x …@MAC`) in the middle, and users copy these lines into a shell."""
    lines = [f"[{c.host}] {c.daemon.name} {shlex.join(c.daemon.args)}"
             for c in plan.changes if c.daemon is not None]
    return Text("\n".join(lines), no_wrap=True, overflow="ignore")


def change_check(change: Change) -> str:
    if change.daemon is not None:
        return change.daemon.ready.describe()
    return "dead-man" if change.guarded else ""


def plan_notes(plan: Plan) -> RenderableType:
    return Text("\n".join(f"note: {n}" for n in plan.notes), style="dim")


def up_renderable(report: UpReport) -> RenderableType:
    parts: list[RenderableType] = [findings_renderable(report.findings)]
    if report.plan is not None:
        parts.append(plan_table(report.plan))
        if report.plan.daemons:
            parts.append(daemon_commands(report.plan))
        if report.plan.notes:
            parts.append(plan_notes(report.plan))
    if report.shipped:
        parts.append(Text("\n".join(f"[{s.host}] engine {s.summary}" for s in report.shipped)))
    if report.steps:
        parts.append(steps_table("applied steps", report.steps))
    if report.notes:
        parts.append(Text("\n".join(f"note: {n}" for n in report.notes), style="dim"))
    parts.append(Text(up_verdict(report), style="bold green" if report.ok else "bold red"))
    return Group(*parts)


def up_verdict(report: UpReport) -> str:
    if report.stale:
        return f"refused: the saved plan is stale ({len(report.stale)} difference(s)); " \
               "nothing was changed"
    if report.refused:
        return "refused: nothing was changed"
    if report.dry_run:
        return "dry run: nothing was changed"
    if report.errors:
        return "failed (rolled back): " + "; ".join(f"[{h}] {e}" for h, e in report.errors.items())
    changed = sum(1 for s in report.steps if s.changed)
    return f"up: lab {report.lab} running ({changed} change(s) made, dead-man confirmed)"


def steps_table(title: str, steps: list[Any]) -> Table:
    table = Table(title=title)
    for col in ("host", "step", "status", "what", "reason"):
        table.add_column(col, overflow="fold")
    for s in steps:
        table.add_row(s.host, s.step, Text(s.status, style=STATUS_STYLE.get(s.status, "")),
                      s.description, s.reason)
    return table


def _counters(d: DaemonStatus) -> str:
    text = " ".join(f"{k}={v}" for k, v in d.counters.items())
    lines = [text, *delay_lines(d.extra.get("copy_delay_ms")),
             *selection_lines(d.extra.get("select"))]
    return "\n".join(line for line in lines if line)


def delay_lines(delay: Any) -> list[str]:
    """tcpcopy's copy delay (how long a copied request waited between its capture and its
    sending: pacing, and any backlog), one line: `copy delay: last 0.4 ms, p99 1.2 ms, max 9
    ms`; [] before the first copied request or from a tcpcopy that does not report it."""
    if not isinstance(delay, dict) or not delay.get("count"):
        return []
    parts = [f"{k} {_ms(delay[k])}" for k in ("last", "p99", "max")
             if isinstance(delay.get(k), (int, float))]
    return ["copy delay: " + ", ".join(parts)] if parts else []


def _ms(value: float) -> str:
    return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.3g} ms"


def selection_lines(select: Any) -> list[str]:
    """tcpcopy's `select` stats, one line per rule that decided something:
    `--allow-path /api: selected 10, skipped 0`; [] without a selection."""
    if not isinstance(select, dict):
        return []
    lines = ["selection: " + (" ".join(str(r) for r in select.get("rules") or [])
                              + (" --safe" if select.get("safe") else "")).strip()]
    by_rule = select.get("by_rule") or {}
    for rule, counts in by_rule.items() if isinstance(by_rule, dict) else ():
        if not isinstance(counts, dict):
            continue
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        lines.append(f"  {rule}: {shown or 'nothing yet'}")
    return lines


def _uptime(d: DaemonStatus) -> str:
    return f"{d.uptime:.0f}s" if d.uptime is not None else "-"


def status_prometheus(report: StatusReport) -> str:
    """Every daemon's counters in the Prometheus text format (engine.metrics), labelled with
    the lab and host: what `--prometheus` prints, the same families the daemons write to
    engine.metrics_file."""
    docs = []
    for h in report.hosts:
        for d in h.daemons:
            counters = dict(d.all_counters)
            if d.restarts is not None:       # a supervised daemon: how often it restarted
                counters["restarts"] = d.restarts
            doc: dict[str, Any] = {"tool": d.name, "state": "running" if d.alive else d.state,
                                   "counters": counters, "updated_at": d.updated_at}
            for key in ("sessions_active", "copy_delay_ms"):
                if key in d.extra:
                    doc[key] = d.extra[key]
            docs.append((doc, {"lab": report.lab, "host": h.host}))
    return prometheus_text(docs)


def status_renderable(report: StatusReport) -> RenderableType:
    hosts = Table(title=f"lab {report.lab}: hosts")
    for col in ("host", "role", "journal", "entries", "dead-man", "tagged routes",
                "labctl iptables"):
        hosts.add_column(col, overflow="fold")
    daemons = Table(title="daemons")
    for col in ("host", "daemon", "runtime", "state", "pid", "uptime", "restarts",
                "key counters"):
        daemons.add_column(col, overflow="fold")
    for h in report.hosts:
        entries = " ".join(f"{k}={v}" for k, v in sorted(h.entries.items())) or "-"
        hosts.add_row(h.host, h.role or "-", h.error or h.journal_state, entries,
                      "armed" if h.deadman_armed else
                      "rolled back" if h.rolled_back_by == "deadman" else "-",
                      "\n".join(h.tagged_routes) or "-", "\n".join(h.labctl_rules) or "-")
        for d in h.daemons:
            runtime = d.runtime + (f", {d.workers} workers" if d.workers != 1 else "")
            daemons.add_row(h.host, d.name, runtime,
                            Text(d.state, style="green" if d.alive else "dim"),
                            str(d.pid or "-"), _uptime(d), _restarts(d), _counters(d))
    return Group(hosts, daemons)


def _restarts(d: DaemonStatus) -> str:
    """`-` (not supervised), else the count, the mechanism and the last exit."""
    if not d.supervisor:
        return "-"
    count = "?" if d.restarts is None else str(d.restarts)
    text = f"{count} ({d.supervisor}"
    text += f", last {d.last_exit})" if d.last_exit and d.restarts else ")"
    return text if d.supervisor_alive else f"{text} supervisor down"


def _final(name: str, stats: dict[str, Any]) -> str:
    counters = stats.get("counters") or {}
    return " ".join(f"{k}={counters[k]}" for k in KEY_COUNTERS.get(name, ()) if k in counters)


def down_renderable(report: DownReport) -> RenderableType:
    table = Table(title=f"down: lab {report.lab}")
    for col in ("host", "result", "steps", "final counters", "left behind"):
        table.add_column(col, overflow="fold")
    for h in report.hosts:
        steps = "\n".join(f"{s.step}: {s.status}" for s in h.steps) or "-"
        finals = "\n".join(f"{name}: {_final(name, stats)}"
                           for name, stats in h.final_stats.items()) or "-"
        result = Text(h.error or h.summary, style="bold red" if h.error else "")
        table.add_row(h.host, result, steps, finals, "\n".join(h.leftovers) or "-")
    verdict = ("down: nothing to do, the lab was already down" if report.noop and report.ok
               else "down: everything labctl changed is undone" if report.ok
               else "down: some hosts need attention (see above)")
    return Group(table, Text(verdict, style="bold green" if report.ok else "bold red"))
