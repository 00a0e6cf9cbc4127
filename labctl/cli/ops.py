"""CLI commands `up`, `plan`, `status`, `down` (and `demo`, in labctl.cli.demo): thin wrappers
that build options, call labctl.up.run / labctl.up.down, and render the result."""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer

from labctl.cli.app import app, parallel_option
from labctl.cli.console import err, hosts_progress, out
from labctl.cli.render import ops as render
from labctl.cli.render.findings import finding_groups_json
from labctl.inventory.models import Inventory
from labctl.plain import dumps, plain
from labctl.up import down as ops_down
from labctl.up import run as ops
from labctl.up import saved_plan
from labctl.up.deadman import DEFAULT_AFTER
from labctl.up.hooks import NO_HOOKS, Hooks
from labctl.up.options import DEFAULT_GUARD_TIMEOUT

SUPERVISE_HELP = ("Keep the daemons running (engine.supervise: restarted with back-off when "
                  "they exit; `down` stops the supervision first).")
PARALLEL_HELP = ("Work on at most N hosts at once (every phase: connect, facts, ship, apply, "
                 "start, confirm).")
STRICT_HELP = ("Treat preflight warnings as errors (e.g. nothing listens on a copied target "
               "port, an OUTPUT rule would refuse the copies).")


def supervised(inv: Inventory, supervise: bool) -> Inventory:
    """`--supervise`: the inventory with engine.supervise on (unchanged without the flag)."""
    if not supervise:
        return inv
    return inv.model_copy(update={"engine": inv.engine.model_copy(update={"supervise": True})})


def hooks_of(ctx: typer.Context) -> Hooks:
    """The test hooks `labctl.cli.main(argv, hooks=...)` was given (NO_HOOKS for users)."""
    return ctx.obj if isinstance(ctx.obj, Hooks) else NO_HOOKS


@app.command()
def up(
    ctx: typer.Context,
    inventory: str = typer.Argument(..., help="Inventory YAML file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
    force: bool = typer.Option(False, "--force",
                               help="Proceed despite errors (never despite SSH refusals)."),
    fix: bool = typer.Option(False, "--fix", help="Also fix what checks can fix (ip_forward)."),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    supervise: bool = typer.Option(False, "--supervise", help=SUPERVISE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    plan_file: Optional[str] = typer.Option(
        None, "--plan", metavar="FILE",
        help="Apply only if this saved plan (`labctl plan --out`) is still what `up` would do; "
             "refuse a stale one."),
    deadman: float = typer.Option(
        DEFAULT_AFTER, "--deadman", envvar="LABCTL_DEADMAN_SECONDS", min=1.0, max=86400.0,
        metavar="SECONDS",
        help="Seconds after which the dead-man timer on a host undoes the changes unless a new "
             "SSH connection confirmed them (never shorter than the guard timeout + 10 s)."),
    guard_timeout: float = typer.Option(
        DEFAULT_GUARD_TIMEOUT, "--guard-timeout", envvar="LABCTL_GUARD_TIMEOUT", min=1.0,
        max=3600.0, metavar="SECONDS",
        help="Seconds a guarded change (route, DROP rule) may stay unanswered before labctl "
             "concludes that it cut SSH and leaves that host to its dead-man timer."),
    parallel: int = parallel_option(PARALLEL_HELP),
) -> None:
    """Preflight, plan, apply (journal + dead-man), launch the daemons, confirm."""
    res = ops.resolve(inventory)
    saved = saved_plan.load(plan_file) if plan_file else None
    if saved is not None and saved.fix and not fix:
        fix = True                  # the plan was made with --fix: its sysctl changes are in it
    if saved is not None and saved.supervise:
        supervise = True            # made with --supervise: its daemons are supervised ones
    with hosts_progress(_names(res), board=not json_out) as (say, watch):
        opts = ops.UpOptions(dry_run=dry_run, force=force, fix=fix, strict=strict,
                             inventory_path=res.path,
                             inventory_text=res.text, progress=say, saved_plan=saved,
                             deadman_seconds=deadman, guard_timeout=guard_timeout,
                             hooks=hooks_of(ctx), parallel=parallel, watch=watch)
        report = ops.up(supervised(res.inventory, supervise), opts)
    _show(report, json_out)
    if saved is not None and report.stale:
        raise saved_plan.stale_error(saved, report.stale)
    if report.refused:
        raise ops.refused_error(report, force, fix, opts.hooks, strict)


@app.command()
def plan(
    ctx: typer.Context,
    inventory: str = typer.Argument(..., help="Inventory YAML file."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    fix: bool = typer.Option(False, "--fix", help="Plan the fixes too (as `up --fix` would)."),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    supervise: bool = typer.Option(False, "--supervise", help=SUPERVISE_HELP),
    out_file: Optional[str] = typer.Option(
        None, "--out", metavar="FILE",
        help="Save the plan; `labctl up INVENTORY --plan FILE` applies it only while it is "
             "still current."),
    parallel: int = parallel_option(PARALLEL_HELP),
) -> None:
    """What `up` would change, touching nothing. Exit 1 when `up` would be refused (errors, or
    warnings with --strict), 0 when it would go ahead."""
    res = ops.resolve(inventory)
    with hosts_progress(_names(res), board=not json_out) as (say, watch):
        report = ops.plan(supervised(res.inventory, supervise),
                          ops.UpOptions(progress=say, fix=fix, strict=strict,
                                        hooks=hooks_of(ctx), parallel=parallel, watch=watch))
    _show(report, json_out)
    if report.refused or report.plan is None:  # exit 1, as scripts expect of a plan `up` refuses
        raise ops.refused_error(report, False, fix, hooks_of(ctx), strict, planning=True)
    if out_file is None:
        return
    digest = saved_plan.save(out_file, report.plan, res.path, res.text, fix,
                             supervise=supervise)
    err().print(f"plan saved to {out_file} (digest {digest[:12]}); apply it with "
                f"`labctl up {res.path} --plan {out_file}`", highlight=False)


def _names(res: ops.Resolved) -> list[str]:
    return [h.name for h in res.inventory.all_hosts()]


def _show(report: ops.UpReport, json_out: bool) -> None:
    if json_out:  # every finding as it is, and the grouped form people read
        doc = {**plain(report), "finding_groups": finding_groups_json(report.findings)}
        out().print_json(dumps(doc))
    else:
        # soft_wrap: tables still fit the terminal, but a daemon's command line is never cut
        out().print(render.up_renderable(report), soft_wrap=True)


@app.command()
def status(
    inventory: Optional[str] = typer.Argument(None, help="Inventory (default: the known lab)."),
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    prometheus: bool = typer.Option(
        False, "--prometheus", help="Print every daemon's counters in the Prometheus text "
                                    "format (labels lab, host), the original counter names."),
    watch: bool = typer.Option(False, "--watch", help="Show it again every --interval seconds "
                                                      "until Ctrl-C (a live view)."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, max=3600.0, metavar="SECONDS",
                                   help="Seconds between two views with --watch."),
    parallel: int = parallel_option(PARALLEL_HELP),
) -> None:
    """Daemons (with their restarts when supervised), counters, tagged routes/rules and journal
    state, per host."""
    res = ops.resolve(inventory)
    try:
        while True:
            report = ops_down.status(res.inventory, parallel=parallel)
            if prometheus:
                sys.stdout.write(render.status_prometheus(report))
                sys.stdout.flush()
            elif json_out:
                out().print_json(dumps(report))
            else:
                if watch:
                    out().clear()
                out().print(render.status_renderable(report))
            if not watch:
                return
            time.sleep(interval)
    except KeyboardInterrupt:           # --watch ends with Ctrl-C
        if not watch:
            raise


@app.command()
def down(
    inventory: Optional[str] = typer.Argument(None, help="Inventory (default: the known lab)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    parallel: int = parallel_option(PARALLEL_HELP),
) -> None:
    """Stop the daemons (keeping final counters) and undo exactly what `up` changed."""
    res = ops.resolve(inventory)
    with hosts_progress(_names(res), board=not json_out) as (say, watch):
        say(f"taking lab {res.inventory.lab} down")
        report = ops_down.down(res.inventory, parallel=parallel, watch=watch)
    if json_out:
        out().print_json(dumps(report))
    else:
        out().print(render.down_renderable(report))
    if not report.ok:
        raise typer.Exit(1)

