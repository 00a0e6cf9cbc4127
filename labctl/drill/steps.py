"""The acting half of `labctl drill`: what each step and fault does, and how it is undone.

Kept thin; the pure decisions (ordering, expectations, cleanup order) are in `labctl.drill.run`.
Every fault pushes its revert onto `Context.faults`; cleanup pops them newest first.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from labctl.drill.run import CleanupResult, StepResult, apply_overrides, check_verify
from labctl.drill.runbook import FaultStep, Runbook, Step, TrafficStep, VerifyStep, WaitStep
from labctl.errors import LabctlError, RemoteError, UsageError
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.pool import HostPool
from labctl.up import daemons as dm
from labctl.up.journal import DaemonRecord
from labctl.verify import fetch as vf
from labctl.verify import ledger as L

Progress = Callable[[str], None]
DROP_TAG = "drill-drop"


@dataclass
class Fault:
    kind: str
    description: str
    revert: Callable[[], None]


@dataclass
class Background:
    proc: subprocess.Popen[str]
    out: Any  # the temporary file its JSON summary goes to
    started_at: float
    step: StepResult


@dataclass
class Context:
    runbook: Runbook
    lab_name: str
    say: Progress
    inv: Optional[Inventory] = None
    inv_path: str = ""
    inv_text: str = ""
    lab: Any = None  # labctl.lab.LabInfo when the drill built the lab
    pool: Optional[HostPool] = None
    up: bool = False
    marks: Optional[vf.Marks] = None
    background: Optional[Background] = None
    faults: list[Fault] = field(default_factory=list)

    @property
    def inventory(self) -> Inventory:
        assert self.inv is not None, "prepare() sets the inventory"
        return self.inv

    def hosts(self) -> HostPool:
        if self.pool is None:
            self.pool = HostPool.open(self.inventory)
        return self.pool

    def run(self, spec: HostSpec, argv: list[str], check: bool = True) -> str:
        res = self.hosts().transport(spec.name).run(argv, sudo=spec.sudo)
        if check:
            res.check()
        return res.stdout

    def close_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


# ---------------------------------------------------------------- prepare


def prepare(ctx: Context, result: Any) -> None:
    """Build the local lab (when the runbook asks for one) or read the inventory file."""
    from labctl.inventory.load import parse_inventory

    rb = ctx.runbook
    overrides = rb.engine.as_update()
    if rb.lab is not None:
        text = _build_lab(ctx, rb.lab.topology)
        result.topology = rb.lab.topology
    else:
        path = _inventory_path(str(rb.inventory), result.source)
        text = path.read_text(encoding="utf-8")
        ctx.inv_path = str(path.resolve())
    ctx.inv_text = apply_overrides(text, overrides)
    ctx.inv = parse_inventory(ctx.inv_text, source=ctx.inv_path or "inventory")
    if overrides and ctx.lab is not None:
        Path(ctx.inv_path).write_text(ctx.inv_text, encoding="utf-8")
    result.lab, result.topology, result.inventory = ctx.inv.lab, ctx.inv.topology, ctx.inv_path
    result.engine = ctx.inv.engine.model_dump()


def _build_lab(ctx: Context, topology: str) -> str:
    from labctl.lab import LabSpec, build_lab
    from labctl.lab.inventory import write_lab_inventory

    ctx.say(f"building the local lab {ctx.lab_name} ({topology})")
    ctx.lab = build_lab(LabSpec(name=ctx.lab_name))
    ctx.lab.assert_routes_via_lab()
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


# ---------------------------------------------------------------- steps


def execute(ctx: Context, step: Step, res: StepResult) -> None:
    handlers: dict[str, Callable[[Context, Any, StepResult], None]] = {
        "up": _up, "down": _down, "traffic": _traffic, "wait": _wait, "verify": _verify,
        "fault": _fault}
    handlers[step.step](ctx, step, res)


def _up(ctx: Context, step: Any, res: StepResult) -> None:
    from labctl.up import run as ops

    ctx.up = True  # from here on cleanup runs `down` (safe when `up` changed nothing)
    report = ops.up(ctx.inventory, ops.UpOptions(
        fix=step.fix, inventory_path=ctx.inv_path, inventory_text=ctx.inv_text,
        progress=ctx.say))
    ctx.up = not report.refused
    res.details = {"changes": sum(1 for s in report.steps if s.changed),
                   "findings": len(report.findings), "notes": "; ".join(report.notes)}
    if report.refused:
        raise ops.refused_error(report, fix=step.fix)
    if not report.ok:
        raise LabctlError("up failed: " + "; ".join(f"[{h}] {m}" for h, m in
                                                    report.errors.items()))
    ctx.marks = vf.mark_logs(ctx.inventory, ctx.hosts())


def _down(ctx: Context, step: Any, res: StepResult) -> None:
    from labctl.up import down as ops_down

    res.details["reverted"] = revert_faults(ctx)
    ctx.close_pool()
    report = ops_down.down(ctx.inventory)
    ctx.up = False
    res.details.update({h.host: h.error or h.summary for h in report.hosts})
    if not report.ok:
        left = [x for h in report.hosts for x in h.leftovers]
        raise LabctlError("down failed: " + "; ".join(
            [f"[{h.host}] {h.error}" for h in report.hosts if h.error] + left))


def _traffic(ctx: Context, step: TrafficStep, res: StepResult) -> None:
    if ctx.background is not None:
        raise UsageError("background traffic is still running; wait until traffic-done first")
    argv = traffic_argv(ctx.lab, step)
    ctx.say(f"sending {step.requests} {step.mode} requests from the lab's client")
    out = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 (outlives us)
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
    bg = Background(proc, out, time.time(), res)
    if step.background:
        ctx.background = bg
        res.details = {"pid": proc.pid, "background": True}
        return
    ctx.background = bg
    join_traffic(ctx, step.timeout)


def traffic_argv(lab: Any, step: TrafficStep) -> list[str]:
    url = f"http://{lab.hosts['online'].address}"
    argv = [*lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url", url,
            "--requests", str(step.requests), "--mode", step.mode, "--connections",
            str(step.connections), "--post-sizes", ",".join(str(s) for s in step.post_sizes),
            "--get-paths", ",".join(step.get_paths), "--json"]
    if step.rate:
        argv += ["--rate", f"{step.rate:g}"]
    return argv


def join_traffic(ctx: Context, timeout: float) -> dict[str, Any]:
    """Wait for the traffic generator; its summary goes into the traffic step's details."""
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
    keys = ("attempted", "sent", "ok", "errors", "elapsed", "rate", "error_kinds")
    bg.step.details.update({k: summary[k] for k in keys if k in summary})
    bg.step.details["elapsed"] = round(float(summary.get("elapsed", 0)), 2)
    bg.step.details["rate"] = round(float(summary.get("rate", 0)), 1)
    if not int(summary.get("sent", 0)):
        raise LabctlError("the traffic generator sent no request")
    return summary


def _wait(ctx: Context, step: WaitStep, res: StepResult) -> None:
    if step.seconds is not None:
        time.sleep(step.seconds)
        return
    if step.until == "traffic-done":
        summary = join_traffic(ctx, step.timeout)
        res.details = {"sent": summary.get("sent"), "ok": summary.get("ok")}
    elif step.until == "copies-settled":
        res.details = settle(ctx, step.quiet, step.timeout)
    elif step.until == "tcpcopy-connected":
        wait_tcpcopy_connected(ctx, step.timeout)


def settle(ctx: Context, quiet: float, timeout: float) -> dict[str, Any]:
    """Until the target's access log has not grown for `quiet` seconds (copies stopped)."""
    inv = ctx.inventory
    spec = inv.hosts.target
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


def wait_tcpcopy_connected(ctx: Context, timeout: float) -> None:
    for spec in ctx.inventory.hosts.online:
        rec = daemon_record(ctx, spec, "tcpcopy")
        dm.wait_connected(ctx.hosts().transport(spec.name), rec, timeout=timeout,
                          sudo=spec.sudo)


def _verify(ctx: Context, step: VerifyStep, res: StepResult) -> None:
    if ctx.background is not None:
        join_traffic(ctx, 300)
    if step.settle:
        settle(ctx, step.settle, step.settle_timeout)
    inv = ctx.inventory
    scope = vf.Scope(marks=ctx.marks) if ctx.marks else vf.resolve_scope(inv, True, None)
    report = vf.run_verify(inv, ctx.hosts(), scope)
    res.ledger = report
    res.checks = check_verify(step, report)
    res.details = verify_details(report)
    ctx.marks = vf.mark_logs(inv, ctx.hosts())  # the next verify sees only what follows


def verify_details(r: L.LedgerReport) -> dict[str, Any]:
    return {"online requests": r.online_requests, "copies matched": r.target_matched,
            "copy ratio": None if r.copy_ratio is None else round(r.copy_ratio, 4),
            "expected ratio": r.expected_ratio, "missing": r.attribution.missing,
            "ledger verdict": "PASS" if r.verdict.passed else "FAIL"}


# ---------------------------------------------------------------- faults


def _fault(ctx: Context, step: FaultStep, res: StepResult) -> None:
    from labctl.drill import faults as df

    if step.kind in df.ENDERS:
        res.details["ended"] = end_fault(ctx, df.ENDERS[step.kind])
        return
    fault = df.inject(ctx, step)
    ctx.faults.append(fault)
    res.details["fault"] = fault.description


def end_fault(ctx: Context, kind: str) -> str:
    for i in range(len(ctx.faults) - 1, -1, -1):
        if ctx.faults[i].kind == kind:
            fault = ctx.faults.pop(i)
            fault.revert()
            return fault.description
    raise UsageError(f"no active {kind} fault to end")


def revert_faults(ctx: Context) -> list[str]:
    """Revert every active fault, newest first; raises after trying all if any failed."""
    done, errors = [], []
    while ctx.faults:
        fault = ctx.faults.pop()
        try:
            fault.revert()
            done.append(fault.kind)
        except (LabctlError, OSError) as exc:
            errors.append(f"{fault.kind}: {getattr(exc, 'message', exc)}")
    if errors:
        raise LabctlError("reverting faults failed: " + "; ".join(errors))
    return done


def daemon_record(ctx: Context, spec: HostSpec, name: str) -> DaemonRecord:
    """The journaled record of the daemon `up` started on this host."""
    from labctl.up.down import read_journal

    journal = read_journal(ctx.hosts().transport(spec.name), ctx.inventory, spec.name)
    for rec in (journal.daemons if journal else []):
        if rec.name == name and not rec.stopped_at:
            return rec
    raise RemoteError(f"no running {name} recorded in the journal", host=spec.name,
                      hint="is the copy setup up? (`labctl status`)")


# ---------------------------------------------------------------- cleanup


def cleanup(ctx: Context, keep: bool) -> list[CleanupResult]:
    """Whatever happened: revert faults, stop traffic, down, destroy the drill's lab."""
    from labctl.drill.run import cleanup_actions

    actions = cleanup_actions([f.kind for f in ctx.faults], ctx.background is not None,
                              ctx.up, ctx.lab is not None, keep)
    out = []
    for action in actions:
        ctx.say(f"cleanup: {action}")
        try:
            detail = _cleanup_one(ctx, action)
            out.append(CleanupResult(action, True, detail))
        except (LabctlError, OSError, subprocess.SubprocessError) as exc:
            out.append(CleanupResult(action, False, getattr(exc, "message", None) or str(exc)))
    ctx.close_pool()
    return out


def _cleanup_one(ctx: Context, action: str) -> str:
    if action.startswith("revert "):
        fault = ctx.faults.pop()
        fault.revert()
        return fault.description
    if action == "stop background traffic":
        bg = ctx.background
        ctx.background = None
        assert bg is not None
        if bg.proc.poll() is None:
            bg.proc.send_signal(signal.SIGTERM)
            try:
                bg.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                bg.proc.kill()
                bg.proc.wait(timeout=10)
        bg.out.close()
        return f"pid {bg.proc.pid} exit {bg.proc.returncode}"
    if action == "down":
        from labctl.up import down as ops_down

        ctx.close_pool()
        report = ops_down.down(ctx.inventory)
        ctx.up = False
        if not report.ok:
            raise LabctlError("; ".join(h.error or ", ".join(h.leftovers)
                                        for h in report.hosts if h.error or h.leftovers))
        return "; ".join(f"{h.host}: {h.summary}" for h in report.hosts)
    if action == "destroy lab":
        from labctl.lab import destroy_lab

        destroy_lab(ctx.lab.name)
        return f"lab {ctx.lab.name} destroyed"
    raise AssertionError(action)
