"""Rendering of verify and diagnose results: rich tables for people, JSON for pipelines.

The JSON documents are stable (keys are only ever added; a change of meaning bumps `schema`):

- `labctl verify --json` (`labctl.verify/1`): `schema`; counts `online_requests`,
  `target_requests`, `target_matched`, `target_excess`, `leaks` (int); `online_by_host`
  {host: int}; ratios `expected_ratio`, `expected_requests`, `loss_pct`, `excess_pct` (number),
  `copy_ratio` (number|null); `worst_endpoints` [{endpoint, online, target, expected, missing,
  loss_pct}]; `status_online`/`status_target` {"200": int}; `latency_online`/`latency_target`/
  `latency_diff` {p50, p90, p99: number|null, samples}; `leak_sources` {addr: int};
  `conntrack` [{host, count, max, count_at_up}]; `daemons` [{host, tool, state, counters,
  updated_at, detail, started_at, baseline_at}] (counters since `baseline_at` when it is set:
  the snapshot taken with the log marks; else since the daemon started); `attribution`
  {missing, buckets: [{name, requests, evidence}], unexplained}; `verdict` {passed, reasons,
  tolerance, inconclusive (the ledger could not be computed as configured: not a PASS)};
  `malformed` {source: int};
  `window` [start, end]|null (POSIX seconds); `notes` [str]; `by_mapping` [{online_port,
  target_port, online, target, matched, expected, missing, loss_pct}] (empty unless both logs
  carry `$server_port`); `selection` (null without `engine.select`) {rules [str], selected,
  filtered, unjudged, target_filtered: int, filtered_by_rule {rule: int}, problems [str],
  engine_selected, engine_skipped: int|null}: with a selection, `online_requests` counts every
  online request and the expectation, ratios, endpoints, status mix and latency cover the
  selected ones only; `target_errors` {endpoint: [errors, answers]}: the target's 5xx/408/499
  answers per endpoint, for endpoints with any.
- `labctl verify --json` with several targets (`hosts.targets`, no `--target`)
  (`labctl.verify-targets/1`): `schema`; `verdict` {passed, reasons (each prefixed
  `target NAME: `), tolerance, inconclusive} (passed only if every target's verdict passed);
  `targets` [{`name`, `role` (baseline|candidate|plain), `address`, then every key of a
  `labctl.verify/1` document but `schema`: that target's ledger against the online hosts}].
  With one target (`hosts.target`, `hosts.targets` with one entry, or `--target NAME`) the
  document is `labctl.verify/1` unchanged.
- `labctl diagnose --json` (`labctl.diagnose/1`): `schema`; `steps` [{question, status
  (ok|broken|skipped), evidence, fix}]; `broken` (the first broken step, or null); `notes` [str].
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Optional

from rich.console import Group
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from labctl.verify.ledger import LedgerReport
from labctl.verify.targets import TargetsReport
from labctl.verify.tree import Diagnosis

VERIFY_SCHEMA = "labctl.verify/1"
VERIFY_TARGETS_SCHEMA = "labctl.verify-targets/1"
DIAGNOSE_SCHEMA = "labctl.diagnose/1"


def to_json(value: Any) -> str:
    """Any report dataclass as JSON (dict keys such as status codes become strings)."""
    return _dump(asdict(value))


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, default=str)


def verify_json(r: LedgerReport) -> str:
    """The `labctl verify --json` document (shape in the module docstring)."""
    return _dump({"schema": VERIFY_SCHEMA, **asdict(r)})


def verify_targets_json(r: TargetsReport) -> str:
    """`labctl verify --json` with several targets (shape in the module docstring)."""
    return _dump({"schema": VERIFY_TARGETS_SCHEMA, "verdict": asdict(r.verdict),
                  "targets": [{"name": t.name, "role": t.role, "address": t.address,
                               **asdict(t.report)} for t in r.targets]})


def diagnose_json(d: Diagnosis) -> str:
    """The `labctl diagnose --json` document: the steps, and the first broken one (or null)."""
    broken = d.broken
    return _dump({"schema": DIAGNOSE_SCHEMA, **asdict(d),
                  "broken": asdict(broken) if broken is not None else None})


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f} %"


def _num(v: Optional[float], digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def summary_table(r: LedgerReport) -> Table:
    t = Table(title="copy ledger", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    if r.window:
        t.add_row("window (UTC)", f"{_when(r.window[0])} - {_when(r.window[1])}")
    hosts = ", ".join(f"{h} {n}" for h, n in r.online_by_host.items())
    t.add_row("online requests", f"{r.online_requests}  ({hosts})")
    if r.selection is not None:
        s = r.selection
        t.add_row("selection", f"selected {s.selected} of {r.online_requests} online requests "
                  f"({s.filtered} filtered by the selection)")
        if s.filtered_by_rule:
            t.add_row("filtered by", ", ".join(f"{rule}: {n}"
                                               for rule, n in s.filtered_by_rule.items()))
    t.add_row("target requests", f"{r.target_requests} (matched {r.target_matched}, "
              f"unmatched {r.target_excess}, foreign {r.leaks})")
    t.add_row("expected ratio", f"{r.expected_ratio:.4f}  ({r.expected_requests:.0f} copies)")
    t.add_row("copy ratio", _num(r.copy_ratio, 4))
    t.add_row("loss / excess", f"{_pct(r.loss_pct)} / {_pct(r.excess_pct)}")
    if r.leak_sources:
        t.add_row("foreign sources", ", ".join(f"{a} ({n})" for a, n in r.leak_sources.items()))
    return t


def attribution_table(r: LedgerReport) -> Table:
    a = r.attribution
    t = Table(title=f"where {a.missing} missing copies went", title_justify="left")
    t.add_column("bucket")
    t.add_column("requests", justify="right")
    t.add_column("evidence")
    for b in a.buckets:
        t.add_row(b.name, str(b.requests), b.evidence)
    t.add_row("unexplained", str(a.unexplained), "no counter accounts for these"
              if a.unexplained else "")
    return t


def endpoints_table(r: LedgerReport) -> Table:
    t = Table(title="worst endpoints", title_justify="left")
    for col in ("endpoint", "online", "target", "missing", "loss"):
        t.add_column(col, justify="left" if col == "endpoint" else "right")
    for e in r.worst_endpoints:
        t.add_row(e.endpoint, str(e.online), str(e.target), str(e.missing), _pct(e.loss_pct))
    return t


def target_errors_table(r: LedgerReport) -> Table:
    t = Table(title="the target's error answers (5xx/408/499) per endpoint", title_justify="left")
    for col in ("endpoint", "errors", "answers", "share"):
        t.add_column(col, justify="left" if col == "endpoint" else "right")
    for ep, (bad, total) in list(r.target_errors.items())[:10]:
        t.add_row(ep, str(bad), str(total), _pct(100.0 * bad / total if total else 0.0))
    return t


def mix_table(r: LedgerReport) -> Table:
    t = Table(title="status mix and latency (s)", title_justify="left")
    t.add_column("")
    t.add_column("online", justify="right")
    t.add_column("target", justify="right")
    t.add_column("target - online", justify="right")
    for code in sorted(set(r.status_online) | set(r.status_target)):
        on, tg = r.status_online.get(code, 0), r.status_target.get(code, 0)
        t.add_row(str(code), str(on), str(tg), f"{tg - on:+d}")
    for name in ("p50", "p90", "p99"):
        t.add_row(name, _num(getattr(r.latency_online, name)),
                  _num(getattr(r.latency_target, name)), _num(getattr(r.latency_diff, name)))
    return t


def engine_table(r: LedgerReport) -> Table:
    t = Table(title="engine daemons and conntrack", title_justify="left")
    for col in ("host", "what", "state", "figures"):
        t.add_column(col)
    keys = ("captured", "kernel_drops", "sampled_out", "sessions_created", "sessions_shed",
            "sessions_no_synack", "sessions_refused", "target_resets", "sessions_timeout",
            "requests_selected", "requests_skipped", "sessions_unselected", "requests_sent",
            "send_errors", "retransmit", "resp_routed", "resp_unrouted")
    for d in r.daemons:
        figures = ", ".join(f"{k}={d.counters[k]}" for k in keys if k in d.counters)
        span = " (since the mark)" if d.baseline_at is not None else ""
        t.add_row(d.host, d.tool + span, d.state, figures or d.detail)
    for c in r.conntrack:
        at_up = "-" if c.count_at_up is None else str(c.count_at_up)
        t.add_row(c.host, "conntrack", _pct(c.used_pct),
                  f"now {c.count}/{c.max}, at up {at_up}")
    return t


def mappings_table(r: LedgerReport) -> Table:
    t = Table(title="per -x mapping", title_justify="left")
    for col in ("online port", "target port", "online", "target", "matched", "loss"):
        t.add_column(col, justify="right")
    for m in r.by_mapping:
        t.add_row(str(m.online_port), str(m.target_port), str(m.online), str(m.target),
                  str(m.matched), _pct(m.loss_pct))
    return t


def verdict_text(r: LedgerReport) -> Text:
    v = r.verdict
    if v.passed:
        head = Text("PASS", style="bold green")
        head.append(f"  copy ratio within ±{v.tolerance:.4f} of {r.expected_ratio:.4f}")
    else:
        head = Text("INCONCLUSIVE" if v.inconclusive else "FAIL", style="bold red")
        for reason in v.reasons:
            head.append(f"\n  - {reason}")
    for note in r.notes:
        head.append(f"\nnote: {note}", style="dim")
    return head


def ledger_view(r: LedgerReport) -> Group:
    parts: list[Any] = [summary_table(r)]
    if r.attribution.missing:
        parts.append(attribution_table(r))
    if r.worst_endpoints:
        parts.append(endpoints_table(r))
    if r.target_errors:
        parts.append(target_errors_table(r))
    if len(r.by_mapping) > 1:
        parts.append(mappings_table(r))
    parts += [mix_table(r), engine_table(r), verdict_text(r)]
    return Group(*parts)


def _word(passed: bool, inconclusive: bool) -> Text:
    if passed:
        return Text("PASS", style="bold green")
    return Text("INCONCLUSIVE" if inconclusive else "FAIL", style="bold red")


def targets_table(r: TargetsReport) -> Table:
    t = Table(title="targets", title_justify="left")
    for col in ("target", "role", "address", "matched", "expected", "loss", "verdict"):
        t.add_column(col, justify="right" if col in ("matched", "expected", "loss") else "left")
    for x in r.targets:
        v = x.report.verdict
        t.add_row(x.name, x.role, x.address, str(x.report.target_matched),
                  f"{x.report.expected_requests:g}", _pct(x.report.loss_pct),
                  _word(v.passed, v.inconclusive))
    return t


def targets_view(r: TargetsReport) -> Group:
    """Each target's ledger under a heading, then the table of targets and the overall
    verdict (PASS only if every target passes)."""
    parts: list[Any] = []
    for x in r.targets:
        parts.append(Rule(f"target {x.name} ({x.role}, {x.address})", align="left"))
        parts.append(ledger_view(x.report))
    parts.append(Rule("all targets", align="left"))
    parts.append(targets_table(r))
    v = r.verdict
    head = _word(v.passed, v.inconclusive)
    head.append(f"  {sum(x.report.verdict.passed for x in r.targets)} of {len(r.targets)} "
                "targets pass", style="")
    parts.append(head)
    return Group(*parts)


def diagnosis_view(d: Diagnosis) -> Group:
    t = Table(title="troubleshooting tree", title_justify="left")
    for col in ("check", "result", "evidence"):
        t.add_column(col)
    for step in d.steps:
        style = {"ok": "green", "broken": "bold red", "skipped": "dim"}.get(step.status, "")
        t.add_row(step.question, Text(step.status, style=style), step.evidence)
    parts: list[Any] = [t]
    if d.broken is None:
        parts.append(Text("no broken link found", style="bold green"))
    else:
        msg = Text(f"first broken link: {d.broken.question}", style="bold red")
        msg.append(f"\n  {d.broken.evidence}")
        msg.append(f"\nfix: {d.broken.fix}", style="bold")
        parts.append(msg)
    for note in d.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)
