"""The inventory's `engine.select` applied to access-log records (pure): which online requests
tcpcopy was asked to copy, so that the ledger expects copies of those only.

A log record becomes an engine `Request` (method, target = `$request_uri`, and the header
fields the log carries: `host` from `$http_host`/`$host`, any `$http_<name>`), judged by the
engine's own `Selection.judge` (not counted). A rule that needs a field the log format lacks
(host rules without `$host`/`$http_host`, a header rule without `$http_<name>`) makes the
selection impossible to apply: `problems` says which, and the ledger's verdict is then
INCONCLUSIVE, never PASS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from engine.http.framer import NONE, Request
from engine.http.select import Decision, Selection
from labctl.inventory.models import Inventory, Select
from labctl.verify.logparse import LogFormat, LogRecord

HOST_VARIABLES = ("host", "http_host")


@dataclass(frozen=True)
class SelectionFigures:
    """What engine.select did to the online requests of the ledger (window included).

    `selected` + `filtered` + `unjudged` = the online requests; `filtered_by_rule` counts the
    filtered ones under the rule that decided (engine names: `--allow-path (none matched)`,
    `--safe`, `--deny-host x`); `target_filtered`: copies at the target the selection should
    have filtered; `engine_selected`/`engine_skipped`: tcpcopy's own counters (None when it
    does not report them), over the counters' span."""

    rules: list[str]
    selected: int
    filtered: int
    filtered_by_rule: dict[str, int]
    unjudged: int
    problems: list[str]
    target_filtered: int
    engine_selected: Optional[int] = None
    engine_skipped: Optional[int] = None


def request_of(rec: LogRecord) -> Request:
    """The engine's view of a logged request (only what the log has: no body, no other
    header than those logged)."""
    headers = list(rec.headers)
    if rec.host and not any(name == "host" for name, _ in headers):
        headers.insert(0, ("host", rec.host))
    return Request(0, 0, 0, rec.method or "", rec.uri or "", "1.1", tuple(headers), NONE,
                   rec.content_length, False, False)


def needed_variables(selection: Selection) -> list[tuple[str, tuple[str, ...]]]:
    """(rule name, the log variables any one of which the rule needs) for rules that need
    more than the method and the URI."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for rule in selection.rules:
        if rule.kind == "host":
            out.append((rule.name, HOST_VARIABLES))
        elif rule.kind == "header":
            var = "http_" + rule.field.replace("-", "_")
            out.append((rule.name, HOST_VARIABLES if rule.field == "host" else (var,)))
    return out


class LogSelection:
    """`engine.select` as verify applies it to the online log. `problems`: why it cannot be
    applied (empty when it can)."""

    def __init__(self, select: Select, log_variables: Sequence[str], log_name: str = "") -> None:
        self.select = select
        self.selection = select.selection()
        self.rules = [r.name for r in self.selection.rules] + (
            ["--safe " + ",".join(select.safe_methods)] if select.safe else [])
        have = set(log_variables)
        where = f" in {log_name}" if log_name else ""
        self.problems = [
            f"{name} needs ${' or $'.join(needs)}{where}, which the log format lacks: "
            "verify cannot tell which online requests this rule selects"
            for name, needs in needed_variables(self.selection) if not have & set(needs)]
        self.needs_host = any(rule.kind == "host" or rule.field == "host"
                              for rule in self.selection.rules)

    def judge(self, rec: LogRecord) -> Optional[Decision]:
        """The engine's decision for this record; None when the record lacks the host a
        rule needs (a line of an older format)."""
        if self.needs_host and not rec.host:
            return None
        return self.selection.judge(request_of(rec))


@dataclass(frozen=True)
class Split:
    """The online records tcpcopy was asked to copy (`kept`, by id) and the rule that
    filtered each other one (None: the record could not be judged, it is kept)."""

    kept: frozenset[int]
    filtered: dict[int, str]
    unjudged: frozenset[int]


def for_inventory(inv: Inventory) -> Optional[LogSelection]:
    """The inventory's engine.select for the online logs (None without one). A rule's field
    must be in every online log's format."""
    if inv.engine.select is None:
        return None
    formats = {inv.log_for(h).format for h in inv.hosts.online}
    variables = set.intersection(*(set(LogFormat(f).variables) for f in formats))
    name = "logs.online.format" + (f" ({next(iter(formats))})" if len(formats) == 1 else "")
    return LogSelection(inv.engine.select, sorted(variables), name)


def split(sel: LogSelection, records: Sequence[LogRecord]) -> Split:
    kept: set[int] = set()
    filtered: dict[int, str] = {}
    unjudged: set[int] = set()
    for rec in records:
        decision = sel.judge(rec)
        if decision is None:
            unjudged.add(id(rec))
            kept.add(id(rec))
        elif decision.copy:
            kept.add(id(rec))
        else:
            filtered[id(rec)] = decision.rule
    return Split(frozenset(kept), filtered, frozenset(unjudged))


def figures(sel: LogSelection, parts: Split, online: Sequence[LogRecord],
            target_unmatched: Sequence[LogRecord], engine_selected: Optional[int],
            engine_skipped: Optional[int]) -> SelectionFigures:
    """The selection's figures over `online` (the ledger's window), with the copies at the
    target that the selection should have filtered (among the unmatched ones)."""
    by_rule = Counter(parts.filtered[id(r)] for r in online if id(r) in parts.filtered)
    unjudged = sum(1 for r in online if id(r) in parts.unjudged)
    problems = list(sel.problems)
    if unjudged and not problems:
        problems.append(f"{unjudged} online log lines carry no host (written by an older log "
                        "format?): verify cannot tell whether the selection copies them")
    wrong = sum(1 for r in target_unmatched
                if (d := sel.judge(r)) is not None and not d.copy)
    return SelectionFigures(
        rules=list(sel.rules), selected=len(online) - sum(by_rule.values()) - unjudged,
        filtered=sum(by_rule.values()), filtered_by_rule=dict(by_rule.most_common()),
        unjudged=unjudged, problems=problems, target_filtered=wrong,
        engine_selected=engine_selected, engine_skipped=engine_skipped)


def notes(f: SelectionFigures, online: int) -> list[str]:
    """The selection in one line, and tcpcopy's own counters beside the log's figures."""
    out = [f"selected {f.selected} of {online} online requests ({f.filtered} filtered by "
           f"the selection: {' '.join(f.rules) or 'no rule'})"]
    if f.engine_skipped is not None:
        out.append(f"tcpcopy's counters over their span: requests selected "
                   f"{f.engine_selected if f.engine_selected is not None else '-'}, skipped "
                   f"{f.engine_skipped} (the log says {f.selected + f.unjudged} and "
                   f"{f.filtered})")
    return out


def reasons(f: SelectionFigures, allowed_excess: float) -> list[str]:
    """Why the verdict cannot pass because of the selection (problems make it inconclusive)."""
    out = list(f.problems)
    if f.target_filtered > allowed_excess:
        out.append(f"{f.target_filtered} target requests are ones the selection filters "
                   "(copied although no rule selects them)")
    return out
