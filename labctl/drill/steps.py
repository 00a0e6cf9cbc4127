"""What each drill step does to the world: `LiveSteps`, the real `StepExecutor`.

Thin on purpose: the decisions (ordering, expectations, cleanup order) are pure and live in
`labctl.drill.model`; when each method runs is `labctl.drill.run`; faults and their exact
reverts are `labctl.drill.faults`. Each method receives the drill's `Context` and updates it as
the `StepExecutor` contract says (`labctl.drill.context`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from labctl.compare.fetch import compared_targets, run_compare
from labctl.drill.context import (
    Background,
    Context,
    Fault,
    StepExecutor,
    daemon_record,
    wait_tcpcopy_connected,
)
from labctl.drill.faults import inject
from labctl.drill.model import (
    DrillResult,
    StepResult,
    apply_overrides,
    check_compare,
    check_latency,
    check_verify,
    compare_details,
    verify_details,
    window_latency,
)
from labctl.drill.runbook import (
    CompareStep,
    DownStep,
    FaultStep,
    TrafficStep,
    UpStep,
    VerifyStep,
    WaitStep,
)
from labctl.errors import LabctlError, RemoteError, UsageError
from labctl.hosts import daemons as dm
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import HostSpec
from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab
from labctl.lab import destroy_lab as destroy_local_lab
from labctl.lab.inventory import write_lab_inventory
from labctl.up import down as up_down
from labctl.up import run as up_run
from labctl.verify import fetch as vf
from labctl.verify import selection as vs
from labctl.verify.logparse import LogRecord

#: How long a verify waits for background traffic to finish before judging.
JOIN_BEFORE_VERIFY = 300.0
#: Traffic summary fields copied into the traffic step's details.
TRAFFIC_KEYS = ("attempted", "sent", "ok", "errors", "elapsed", "rate", "error_kinds")


class LiveSteps(StepExecutor):
    """The real executor: the local lab or an inventory file, `up`/`down`, the lab's traffic
    generator, the loss ledger and the faults of `labctl.drill.faults`."""

    def prepare(self, ctx: Context, result: DrillResult) -> None:
        """Build the local lab (when the runbook asks for one) or read the inventory file;
        the runbook's engine overrides are applied to the inventory text."""
        rb = ctx.runbook
        overrides = rb.engine.as_update()
        if rb.lab is not None:
            text = _build_lab(ctx, rb.lab.topology, rb.lab.targets)
            result.topology = rb.lab.topology
        else:
            path = _inventory_path(str(rb.inventory), result.source)
            text = path.read_text(encoding="utf-8")
            ctx.inv_path = str(path.resolve())
        ctx.inv_text = apply_overrides(text, overrides)
        ctx.inv = parse_inventory(ctx.inv_text, source=ctx.inv_path or "inventory")
        if overrides and ctx.lab is not None:
            Path(ctx.inv_path).write_text(ctx.inv_text, encoding="utf-8")
        result.lab, result.topology = ctx.inv.lab, ctx.inv.topology
        result.inventory, result.engine = ctx.inv_path, ctx.inv.engine.model_dump()

    def up(self, ctx: Context, step: UpStep, res: StepResult) -> None:
        """`labctl up` on the inventory; then mark the logs (the first verify starts there)."""
        ctx.up = True  # from here on cleanup runs `down` (safe when `up` changed nothing)
        report = up_run.up(ctx.inventory, up_run.UpOptions(
            fix=step.fix, inventory_path=ctx.inv_path, inventory_text=ctx.inv_text,
            progress=ctx.say))
        ctx.up = not report.refused
        res.details = {"changes": sum(1 for s in report.steps if s.changed),
                       "findings": len(report.findings), "notes": "; ".join(report.notes)}
        if report.refused:
            raise up_run.refused_error(report, fix=step.fix)
        if not report.ok:
            raise LabctlError("up failed: " + "; ".join(f"[{h}] {m}" for h, m in
                                                        report.errors.items()))
        ctx.marks = vf.mark_logs(ctx.inventory, ctx.hosts())

    def down(self, ctx: Context, step: DownStep, res: StepResult) -> None:
        """`labctl down`; details: host -> what it undid (or its error)."""
        ctx.close_pool()
        report = up_down.down(ctx.inventory)
        ctx.up = False
        res.details.update({h.host: h.error or h.summary for h in report.hosts})
        if not report.ok:
            left = [x for h in report.hosts for x in h.leftovers]
            raise LabctlError("down failed: " + "; ".join(
                [f"[{h.host}] {h.error}" for h in report.hosts if h.error] + left))

    def traffic(self, ctx: Context, step: TrafficStep, res: StepResult) -> None:
        """Run the lab's traffic generator in the client namespace (joined at once unless
        `background`)."""
        if ctx.background is not None:
            raise UsageError("background traffic is still running; wait until traffic-done "
                             "first")
        argv = traffic_argv(ctx.built_lab, step)
        ctx.say(f"sending {step.requests} {step.mode} requests from the lab's client")
        out = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (outlives us)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        ctx.background = Background(proc, out, time.time(), res)
        if step.background:
            res.details = {"pid": proc.pid, "background": True}
            return
        join_traffic(ctx, step.timeout)

    def wait(self, ctx: Context, step: WaitStep, res: StepResult) -> None:
        """Sleep, or wait until traffic is done, copies settled or tcpcopy is connected."""
        if step.seconds is not None:
            time.sleep(step.seconds)
        elif step.until == "traffic-done":
            summary = join_traffic(ctx, step.timeout)
            res.details = {"sent": summary.get("sent"), "ok": summary.get("ok")}
        elif step.until == "copies-settled":
            res.details = settle(ctx, step.quiet, step.timeout)
        elif step.until == "tcpcopy-connected":
            wait_tcpcopy_connected(ctx, step.timeout)

    def verify(self, ctx: Context, step: VerifyStep, res: StepResult) -> None:
        """The loss ledger over what happened since the previous mark, judged by the step."""
        if ctx.background is not None:
            join_traffic(ctx, JOIN_BEFORE_VERIFY)
        if step.settle:
            settle(ctx, step.settle, step.settle_timeout)
        inv = ctx.inventory
        scope = vf.Scope(marks=ctx.marks) if ctx.marks else vf.resolve_scope(inv, True, None)
        watch = vf.Watch(inv, ctx.hosts(), scope)
        report = watch.refresh()
        res.ledger, res.records = report, watch_records(watch)
        buckets = copier_latency(ctx)
        window = window_latency(buckets, ctx.latency_marks)
        res.checks = check_verify(step, report) + check_latency(step, window)
        res.details = verify_details(report)
        if window is not None:
            res.details["target p50/p90 ms (tcpcopy)"] = f"{window['p50']:g} / {window['p90']:g}"
        ctx.marks = vf.mark_logs(inv, ctx.hosts())  # the next verify sees only what follows
        ctx.latency_marks = buckets

    def compare(self, ctx: Context, step: CompareStep, res: StepResult) -> None:
        """Baseline vs candidate over what happened since the last mark, judged by the step;
        the mark stays where it is (a verify after this sees the same traffic)."""
        inv = ctx.inventory
        targets = compared_targets(inv)  # a usage error before waiting on anything
        if ctx.background is not None:
            join_traffic(ctx, JOIN_BEFORE_VERIFY)
        if step.settle:
            for spec in targets.values():
                settle(ctx, step.settle, step.settle_timeout, spec)
        scope = vf.Scope(marks=ctx.marks) if ctx.marks else vf.resolve_scope(inv, True, None)
        report = run_compare(inv, ctx.hosts(), scope)
        res.comparison = report
        res.checks = check_compare(step, report)
        res.details = compare_details(report)

    def apply_fault(self, ctx: Context, step: FaultStep) -> Fault:
        return inject(ctx, step)

    def revert_fault(self, ctx: Context, fault: Fault) -> None:
        fault.revert()

    def stop_traffic(self, ctx: Context) -> str:
        """SIGTERM the traffic generator (SIGKILL after 10 s); its pid and exit status."""
        bg, ctx.background = ctx.background, None
        if bg is None:
            return "not running"
        if bg.proc.poll() is None:
            bg.proc.send_signal(signal.SIGTERM)
            try:
                bg.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                bg.proc.kill()
                bg.proc.wait(timeout=10)
        bg.out.close()
        return f"pid {bg.proc.pid} exit {bg.proc.returncode}"

    def teardown(self, ctx: Context) -> str:
        """`labctl down` at cleanup; one summary per host."""
        ctx.close_pool()
        report = up_down.down(ctx.inventory)
        ctx.up = False
        if not report.ok:
            raise LabctlError("; ".join(h.error or ", ".join(h.leftovers)
                                        for h in report.hosts if h.error or h.leftovers))
        return "; ".join(f"{h.host}: {h.summary}" for h in report.hosts)

    def destroy_lab(self, ctx: Context) -> str:
        name = ctx.built_lab.name
        destroy_local_lab(name)
        return f"lab {name} destroyed"

    def close(self, ctx: Context) -> None:
        ctx.close_pool()


def watch_records(watch: vf.Watch) -> tuple[list[LogRecord], list[LogRecord]]:
    """The records a verify compared (for the report's plots): the online hosts' requests
    copies were expected of (with engine.select, the selected ones, as the ledger counts
    them), and everything the target logged."""
    targets = {t.name for t in watch.inv.targets}
    target = watch.targets[0].name          # the (first) target this watch compares
    online = [r for (host, _), recs in watch.records.items() if host not in targets
              for r in recs]
    sel = vs.for_inventory(watch.inv)
    if sel is not None:
        kept = vs.split(sel, online).kept
        online = [r for r in online if id(r) in kept]
    return online, [r for (host, _), recs in watch.records.items() if host == target
                    for r in recs]


# ---------------------------------------------------------------- prepare


def _build_lab(ctx: Context, topology: str, targets: int = 1) -> str:
    """Build the drill's lab; the text of the inventory written for it."""
    more = f", {targets} targets" if targets > 1 else ""
    ctx.say(f"building the local lab {ctx.lab_name} ({topology}{more})")
    ctx.lab = build_lab(LabSpec(name=ctx.lab_name, targets=targets))
    assert_routes_via_lab(ctx.lab)
    path, text = write_lab_inventory(ctx.lab, topology)
    ctx.inv_path = str(path)
    return text


def _inventory_path(name: str, source: str) -> Path:
    """Relative to the current directory, else to the runbook's directory."""
    p = Path(name).expanduser()
    candidates = [p] if p.is_absolute() or p.exists() else [p, Path(source).parent / p]
    for c in candidates:
        if c.is_file():
            return c
    raise UsageError(f"{source}: inventory {name!r} not found",
                     hint="paths are relative to the current directory or the runbook's")


# ---------------------------------------------------------------- traffic and waiting


def traffic_argv(lab: LabInfo, step: TrafficStep) -> list[str]:
    """The traffic generator's argv, run inside the lab's client namespace (pure)."""
    url = f"http://{lab.hosts['online'].address}"
    argv = [*lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url", url,
            "--requests", str(step.requests), "--mode", step.mode, "--connections",
            str(step.connections), "--post-sizes", ",".join(str(s) for s in step.post_sizes),
            "--get-paths", ",".join(step.get_paths), "--json"]
    if step.rate:
        argv += ["--rate", f"{step.rate:g}"]
    return argv


def join_traffic(ctx: Context, timeout: float) -> dict[str, Any]:
    """Wait for the traffic generator; its JSON summary, also merged into the traffic step's
    details. Raises when it did not finish, printed no summary or sent nothing."""
    bg = ctx.background
    if bg is None:
        raise UsageError("no background traffic to wait for")
    try:
        bg.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabctlError(f"traffic did not finish within {timeout:g} s") from None
    ctx.background = None
    bg.out.seek(0)
    text = bg.out.read()
    bg.out.close()
    try:
        summary = dict(json.loads(text.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise LabctlError(f"traffic generator failed (exit {bg.proc.returncode}): "
                          f"{text.strip()[-400:]}") from None
    bg.step.details.update({k: summary[k] for k in TRAFFIC_KEYS if k in summary})
    bg.step.details["elapsed"] = round(float(summary.get("elapsed", 0)), 2)
    bg.step.details["rate"] = round(float(summary.get("rate", 0)), 1)
    if not int(summary.get("sent", 0)):
        raise LabctlError("the traffic generator sent no request")
    return summary


def settle(ctx: Context, quiet: float, timeout: float,
           target: Optional[HostSpec] = None) -> dict[str, Any]:
    """Until the target's access log has not grown for `quiet` seconds (copies stopped);
    {"target log bytes": size}. Raises RemoteError after `timeout`. `target`: which target
    (default: the first)."""
    inv = ctx.inventory
    spec = target or inv.targets[0]
    path = inv.log_for(spec).path
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        size = int(ctx.run(spec, ["stat", "-c", "%s", path]).strip() or "0")
        now = time.monotonic()
        if size != last:
            last, since = size, now
        elif now - since >= quiet:
            return {"target log bytes": size}
        if now >= deadline:
            raise RemoteError(f"the target's log kept growing for {timeout:g} s",
                              host=spec.name)
        time.sleep(0.25)


def copier_latency(ctx: Context) -> dict[str, int]:
    """tcpcopy's target-response-time buckets now, summed over the online hosts (empty when
    a daemon is not running or reports none)."""
    total: dict[str, int] = {}
    for spec in ctx.inventory.hosts.online:
        try:
            rec = daemon_record(ctx, spec, "tcpcopy")
        except LabctlError:
            continue
        stats = dm.read_stats(ctx.hosts().transport(spec.name), rec.stats_file) or {}
        for bound, n in ((stats.get("target_response_ms") or {}).get("buckets") or {}).items():
            if isinstance(n, int):
                total[bound] = total.get(bound, 0) + n
    return total
