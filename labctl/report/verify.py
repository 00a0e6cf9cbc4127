"""Verify reports (`labctl verify --report DIR`): a ledger and the records it compared ->
report.html (self-contained, plots inline), report.md and report.json in a directory.

The JSON holds the ledger (every field, through `labctl.plain`) and the numbers behind each
plot; like the drill reports, only counts, addresses, methods, URIs, statuses and times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from labctl.plain import dumps, plain
from labctl.report import figures as F
from labctl.report import series as S
from labctl.report.ledger import ledger_view, verdict_word
from labctl.report.render import render, when, write_files

__all__ = ["FILES", "SCHEMA", "VerifyReport", "default_dir", "plots", "render_html",
           "render_markdown", "to_json", "view", "when", "write_report"]
from labctl.verify.ledger import LedgerReport

FILES = ("report.html", "report.md", "report.json")
SCHEMA = "labctl.verify-report/1"


@dataclass(frozen=True)
class VerifyReport:
    """What a verify report shows: the ledger, the records behind it, and where they came
    from (`scope` says which span was compared, in words)."""

    ledger: LedgerReport
    traffic: S.Traffic
    lab: str = ""
    inventory: str = ""
    scope: str = ""
    generated_at: float = 0.0

    @property
    def verdict(self) -> str:
        return verdict_word(self.ledger)


def plots(rep: VerifyReport) -> F.Plots:
    led = rep.ledger
    t0 = led.window[0] if led.window else None
    return F.traffic_plots(rep.traffic, t0, led.expected_ratio, led.verdict.tolerance)


def view(rep: VerifyReport, drawn: Optional[F.Plots] = None) -> dict[str, Any]:
    """Everything the templates show, as plain values (draws the plots unless given)."""
    led = rep.ledger
    window = "-" if led.window is None else f"{when(led.window[0])} to {when(led.window[1])}"
    return {"verdict": rep.verdict, "lab": rep.lab or "-", "inventory": rep.inventory or "-",
            "scope": rep.scope or "-", "window": window,
            "generated": when(rep.generated_at), "ledger": ledger_view(led),
            "plots": (drawn if drawn is not None else plots(rep)).view()}


def render_markdown(rep: VerifyReport, drawn: Optional[F.Plots] = None) -> str:
    return render("verify.md.j2", v=view(rep, drawn))


def render_html(rep: VerifyReport, drawn: Optional[F.Plots] = None) -> str:
    return render("verify.html.j2", v=view(rep, drawn))


def to_json(rep: VerifyReport, drawn: Optional[F.Plots] = None) -> str:
    data = {"schema": SCHEMA, "verdict": rep.verdict, "lab": rep.lab,
            "inventory": rep.inventory, "scope": rep.scope, "generated_at": rep.generated_at,
            "ledger": plain(rep.ledger),
            "plots": (drawn if drawn is not None else plots(rep)).as_json()}
    return dumps(data)


def write_report(rep: VerifyReport, directory: Union[str, Path]) -> list[Path]:
    """Write report.html, report.md and report.json into `directory` (created)."""
    drawn = plots(rep)
    return write_files(directory, {"report.html": render_html(rep, drawn),
                                   "report.md": render_markdown(rep, drawn),
                                   "report.json": to_json(rep, drawn) + "\n"})


def default_dir(lab: str, now: Optional[float] = None, base: Union[str, Path] = ".") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else
                                                           time.time()))
    return Path(base) / "labctl-reports" / f"verify-{lab}-{stamp}"
