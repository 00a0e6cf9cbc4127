"""The live per-host progress of `plan`/`up`/`status`/`down` (pure): what each host is doing
(phase and state, seconds in it), as a rich table for a terminal and as plain lines otherwise.

    board = HostBoard(["online", "target"])
    board.update("online", "facts", "running", now=1.0)
    board.table(now=2.0)                 # a rich Table: host | phase | state | seconds
    board.line("online", now=2.0)        # "[online] facts: running (1.0s)"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rich.table import Table
from rich.text import Text

STYLES = {"running": "yellow", "ok": "green", "failed": "bold red", "waiting": "dim"}


@dataclass
class HostLine:
    host: str
    phase: str = ""
    state: str = "waiting"
    since: float = 0.0
    ended: Optional[float] = None   # when the phase ended (its seconds stop counting)
    failed_in: str = ""   # the phase a host failed in, kept while later phases run elsewhere

    def seconds(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.since


class HostBoard:
    """Each host's latest phase and state; `table` and `line` render it."""

    def __init__(self, hosts: Optional[list[str]] = None) -> None:
        self.hosts: dict[str, HostLine] = {h: HostLine(h) for h in hosts or []}

    def update(self, host: str, phase: str, state: str, now: float) -> HostLine:
        line = self.hosts.setdefault(host, HostLine(host))
        if line.phase != phase or state == "running":
            line.since = now
        line.ended = None if state == "running" else now
        line.phase, line.state = phase, state
        if state == "failed":
            line.failed_in = phase
        return line

    def line(self, host: str, now: float) -> str:
        h = self.hosts[host]
        failed = f", failed in {h.failed_in}" if h.failed_in and h.state != "failed" else ""
        return f"[{host}] {h.phase}: {h.state} ({h.seconds(now):.1f}s){failed}"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.hosts.values():
            out[h.state] = out.get(h.state, 0) + 1
        return out

    def table(self, now: float, title: str = "") -> Table:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))
        t = Table(title=f"{title} ({summary})" if title else summary, title_justify="left",
                  expand=False, pad_edge=False, box=None)
        t.add_column("host", no_wrap=True)
        t.add_column("phase", no_wrap=True)
        t.add_column("state", no_wrap=True)
        t.add_column("s", justify="right", no_wrap=True)
        t.add_column("", no_wrap=True)
        for h in self.hosts.values():
            note = f"failed in {h.failed_in}" if h.failed_in and h.state != "failed" else ""
            t.add_row(h.host, h.phase or "-", Text(h.state, style=STYLES.get(h.state, "")),
                      f"{h.seconds(now):.1f}" if h.phase else "", Text(note, style="red"))
        return t
