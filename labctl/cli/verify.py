"""CLI commands: `labctl verify` (the loss ledger) and `labctl diagnose` (the troubleshooting tree).

Thin: resolve the inventory, open the host pool, call the core, render, map the verdict to an
exit code.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional, Union

import typer
from rich.console import Console, Group
from rich.live import Live

from labctl.cli.app import app, invoked_at, parallel_option
from labctl.cli.render import verify as rv
from labctl.drill.steps import watch_records
from labctl.errors import BrokenLinkFound, UsageError, VerifyFailed
from labctl.hosts.journal import local_state_root
from labctl.inventory.models import Inventory
from labctl.report import verify as rp
from labctl.report.series import Traffic
from labctl.transport.pool import HostPool
from labctl.up.run import resolve
from labctl.verify import fetch as core
from labctl.verify.diagnose import run_diagnose
from labctl.verify.ledger import LedgerReport
from labctl.verify.targets import TargetsReport

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_INV_HELP = "Inventory (default: the lab that is up)."


#: --window (verify, compare): N counted back from when the command started
WINDOW_HELP = "Compare the last N (60s, 5m) before the command started."


def parse_duration(text: str) -> float:
    """`60s`, `2m`, `1h`, `500ms`, `90` (seconds) -> seconds."""
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--window {text!r}: expected a duration like 60s, 5m or 1h")
    return float(m.group(1)) * _UNIT[m.group(2) or "s"]


def resolve_inventory(path: Optional[Path], command: str = "verify") -> Inventory:
    """The given inventory, else the one `up` recorded when exactly one lab is known here."""
    try:
        return resolve(str(path) if path is not None else None).inventory
    except UsageError as exc:
        if path is not None:
            raise
        raise UsageError(
            f"{command} needs an inventory: {exc.message} (state dir {local_state_root()})",
            hint=f"pass the inventory (`labctl {command} inventories/local.yaml`), or bring a lab "
                 "up first (`labctl lab up` then `labctl up inventories/local.yaml`)") from exc


def _pool(inv: Inventory, parallel: Optional[int] = None) -> HostPool:
    return HostPool.open(inv, parallel=parallel)


@app.command("verify")
def verify_cmd(
    inventory: Optional[Path] = typer.Argument(None, help=_INV_HELP),
    window: Optional[str] = typer.Option(None, "--window", help=WINDOW_HELP),
    since_up: bool = typer.Option(False, "--since-up", help="Compare everything since `up`."),
    watch: bool = typer.Option(False, "--watch", help="Refresh a live table until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, max=3600.0,
                                   metavar="SECONDS",
                                   help="Seconds between --watch refreshes."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    target: Optional[str] = typer.Option(None, "--target",
                                         help="Compare only this target (hosts.targets)."),
    report_dir: Optional[Path] = typer.Option(
        None, "--report", metavar="DIR", help="Also write report.html (plots inline), "
        "report.md and report.json into DIR (after the last refresh with --watch; with "
        "several targets, of the --target one)."),
    parallel: int = parallel_option("Read at most N hosts at once."),
) -> None:
    """The loss ledger: online vs target access logs and engine counters, with a verdict
    (with several targets: one ledger and verdict per target; PASS only if all pass)."""
    if window is not None and since_up:
        raise UsageError("give either --window or --since-up, not both")
    if watch and as_json:
        raise UsageError("--watch draws a live table; for pipelines run --json once per check")
    if interval <= 0:
        raise UsageError(f"--interval {interval:g}: expected seconds > 0")
    inv = resolve_inventory(inventory)
    several = len(inv.targets) > 1 and target is None
    if report_dir is not None and several:
        raise UsageError("--report with several targets: name the one to report on "
                         "(--target NAME)", hint="targets: " + ", ".join(
                             t.name for t in inv.targets))
    seconds = parse_duration(window) if window is not None else None
    scope = core.resolve_scope(inv, since_up, seconds, anchor=invoked_at())
    console = Console()
    with _pool(inv, parallel) as pool:
        session = core.Watch(inv, pool, scope, only=target)
        view = _View(session, several=several)
        report = view.refresh()
        if watch:
            report = _watch(view, report, console, interval)
        elif as_json:
            typer.echo(view.json(report))
        else:
            console.print(view.render(report))
        if report_dir is not None and isinstance(report, LedgerReport):
            paths = write_report(session, report, inventory, report_dir)
            typer.echo("report: " + ", ".join(str(p) for p in paths), err=as_json)
    if not report.verdict.passed:
        word = "INCONCLUSIVE" if report.verdict.inconclusive else "FAIL"
        raise VerifyFailed(f"verdict {word}: " + "; ".join(report.verdict.reasons),
                           hint="see the attribution table (or --json) for where copies went")


def write_report(session: core.Watch, report: LedgerReport, inventory: Optional[Path],
                 directory: Path) -> list[Path]:
    """The verify report of this session's last refresh, written into `directory`."""
    online, target = watch_records(session)
    rep = rp.VerifyReport(report, Traffic(online, target, report.window), session.inv.lab,
                          str(inventory) if inventory else "(the lab that is up)",
                          _scope_text(session.scope), time.time())
    return rp.write_report(rep, directory)


def _scope_text(scope: core.Scope) -> str:
    if scope.window is not None:
        return f"the last {scope.window:g} s"
    if scope.marks is not None:
        return f"everything logged since `up` marked the logs ({rp.when(scope.marks.taken_at)})"
    return f"everything logged since `up` finished ({rp.when(scope.since)})"


Report = Union[LedgerReport, TargetsReport]


class _View:
    """One target: the single ledger as always; several (`hosts.targets`): one per target."""

    def __init__(self, session: core.Watch, several: bool):
        self.session, self.several = session, several

    def refresh(self) -> Report:
        return self.session.refresh_targets() if self.several else self.session.refresh()

    def render(self, report: Report) -> Group:
        if isinstance(report, TargetsReport):
            return rv.targets_view(report)
        return rv.ledger_view(report)

    def json(self, report: Report) -> str:
        if isinstance(report, TargetsReport):
            return rv.verify_targets_json(report)
        return rv.verify_json(report)


def _watch(session: _View, report: Report, console: Console, interval: float) -> Report:
    """Refresh until Ctrl-C, which ends the watch normally: the last report stays on screen
    and decides the exit code, like a single verify. On a terminal the table is redrawn in
    place; into a pipe or file every refresh is printed in full, one after the other."""
    refreshes = 1
    live = Live(session.render(report), console=console, auto_refresh=False)
    if console.is_terminal:
        live.start(refresh=True)
    else:
        console.print(session.render(report))
    try:
        while True:
            time.sleep(interval)
            report = session.refresh()
            refreshes += 1
            if console.is_terminal:
                live.update(session.render(report), refresh=True)
            else:
                console.rule(f"refresh {refreshes}")
                console.print(session.render(report))
    except KeyboardInterrupt:
        pass
    finally:
        if console.is_terminal:
            live.stop()
    verdict = "PASS" if report.verdict.passed else (
        "INCONCLUSIVE" if report.verdict.inconclusive else "FAIL")
    typer.echo(f"watch stopped after {refreshes} refreshes: last verdict {verdict}", err=True)
    return report


@app.command("diagnose")
def diagnose_cmd(
    inventory: Optional[Path] = typer.Argument(None, help=_INV_HELP),
    seconds: float = typer.Option(5.0, "--seconds", min=1.0, max=120.0, metavar="SECONDS",
                                  help="How long to capture on every host."),
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis as JSON."),
    target: Optional[str] = typer.Option(
        None, "--target", help="With several targets: the one to diagnose (default: first)."),
) -> None:
    """Capture briefly on every host and name the first broken link of the copy path.

    Exit code 3 when a broken link is found, 0 when none is."""
    inv = resolve_inventory(inventory, "diagnose")
    with _pool(inv) as pool:
        diagnosis = run_diagnose(inv, pool, seconds, target=target)
    if as_json:
        typer.echo(rv.diagnose_json(diagnosis))
    else:
        Console().print(rv.diagnosis_view(diagnosis))
    if diagnosis.broken is not None:
        b = diagnosis.broken        # scripts: `labctl diagnose || ...`
        raise BrokenLinkFound(f"broken link: {b.question}: {b.evidence}", hint=b.fix or None)
