"""Preflight findings for people (pure): grouped (labctl.up.findings: one entry per check and
subject, listing the hosts or addresses it applies to), each entry a headline and an indented,
wrapped message and hint, so 80 columns read as well as 200. `--json` keeps every finding in
`findings` and adds the groups as `finding_groups` (`finding_groups_json`).
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from labctl.model import Finding, Severity
from labctl.up.findings import FindingGroup, group_findings

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARN: "yellow", Severity.INFO: "dim"}
INDENT = 4


def findings_renderable(findings: list[Finding]) -> RenderableType:
    """`preflight checks: 2 errors, 1 warning` then one headline + body per group."""
    groups = group_findings(findings)
    parts: list[RenderableType] = [wrapped(summary(findings), style="bold")]
    for g in groups:
        parts.append(headline(g))
        body = wrapped(g.message)
        if g.hint:
            body.append("\nhint: " + g.hint, style="dim")
        parts.append(Padding(body, (0, 0, 0, INDENT)))
    return Group(*parts)


def summary(findings: list[Finding]) -> str:
    if not findings:
        return "preflight checks: no findings"
    counts = []
    for sev, word in ((Severity.ERROR, "error"), (Severity.WARN, "warning"),
                      (Severity.INFO, "note")):
        n = sum(1 for f in findings if f.severity is sev)
        if n:
            counts.append(f"{n} {word}" + ("s" if n != 1 else ""))
    refusals = sum(1 for f in findings if f.refusal)
    tail = f" ({refusals} protecting SSH access: --force never skips them)" if refusals else ""
    return "preflight checks: " + ", ".join(counts) + tail


def headline(g: FindingGroup) -> Text:
    """`error (refusal)  route.operator  on target`; wraps (never cut) when the hosts are many."""
    sev = g.severity.value + (" (refusal)" if g.refusal else "")
    line = wrapped("")
    line.append(sev, style=SEVERITY_STYLE.get(g.severity, ""))
    line.append("  ")
    line.append(g.id, style="bold")
    line.append(f"  on {g.where}")
    return line


def wrapped(text: str, style: str = "") -> Text:
    """Text that wraps at the terminal's width even where the CLI prints with soft_wrap (which
    `up`/`plan` do, so that daemon command lines stay whole): never cut, never wider."""
    return Text(text, style=style, no_wrap=False, overflow="fold")


def finding_groups_json(findings: list[Finding]) -> list[dict[str, Any]]:
    """The groups as plain JSON: id, severity, refusal, message, hint, hosts, count."""
    return [{"id": g.id, "severity": g.severity.value, "refusal": g.refusal,
             "message": g.message, "hint": g.hint, "hosts": list(g.hosts), "count": g.count}
            for g in group_findings(findings)]
