"""Faults a drill injects, each with its exact revert.

- stop-intercept: stop the intercept daemon `up` started (daemons module, final stats kept);
  revert = start it again with its journaled argv, wait until it listens and tcpcopy reconnects.
- drop: on the online host(s), a labctl-owned chain `LABCTL-D-<lab>` dropping a random
  percentage (iptables `statistic`) of the copies tcpcopy sends to the target; jumped to from
  OUTPUT by a rule tagged `labctl:<lab>:drill-drop`; revert = delete the jump, flush, delete.
- stall-target (local lab only): SIGSTOP the target's nginx (master from its pidfile, and its
  workers); revert = SIGCONT.
- remove-route (three-server): delete the target's route to the fake client network via the
  assistant; revert = put the same route back (same gateway, device and proto tag).
- netem: delay, jitter, loss, reordering, a rate limit on the copy path only: a netem qdisc on
  the target (`tc`, where its kernel has one) or tcpcopy shaping its copies (`engine`: the
  daemon's `--netem-file` + SIGHUP; any kernel); revert = delete the qdisc / the file + SIGHUP.

Each injector is `(Context, FaultStep) -> Fault` and acts at once; the Fault's `revert` closes
over exactly what it found and changed. A new fault kind: its injector here, an entry in
`INJECTORS`, and the kind with its ending kind in `labctl.drill.runbook.FAULT_PAIRS`.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from engine.netem import NetemSpec
from labctl.drill.context import Context, Fault, daemon_record, wait_tcpcopy_connected
from labctl.drill.runbook import FaultStep
from labctl.errors import LabctlError, RemoteError, UsageError
from labctl.hosts import daemons as dm
from labctl.hosts import journal as jr
from labctl.hosts.journal import DaemonRecord
from labctl.inventory.models import HostSpec
from labctl.model import CHAIN_PREFIX, Change, ChangeKind

READY_TIMEOUT = 30.0
Injector = Callable[[Context, FaultStep], Fault]


def inject(ctx: Context, step: FaultStep) -> Fault:
    """Inject the fault `step` names (one of FAULT_PAIRS); the Fault carries its revert."""
    return INJECTORS[step.kind](ctx, step)


# ---------------------------------------------------------------- intercept


def stop_intercept(ctx: Context, step: FaultStep) -> Fault:
    """Stop the journaled intercept; the revert starts it again and waits for tcpcopy."""
    spec = ctx.inventory.intercept_host
    t = ctx.hosts().transport(spec.name)
    rec = daemon_record(ctx, spec, "intercept")
    ctx.say(f"[{spec.name}] stopping intercept")
    dm.stop(t, rec)

    def restart() -> None:
        ctx.say(f"[{spec.name}] starting intercept again")
        t2 = ctx.hosts().transport(spec.name)
        rec.stopped_at = None
        dm.start(t2, rec)
        dm.wait_listening(t2, rec, ctx.inventory.intercept.port, timeout=READY_TIMEOUT)
        wait_tcpcopy_connected(ctx, READY_TIMEOUT)

    return Fault("stop-intercept", f"intercept stopped on {spec.name}", restart)


# ---------------------------------------------------------------- drop


def drop_chain(lab: str) -> str:
    """The labctl-owned iptables chain of the drop fault (`LABCTL-D-<lab>`)."""
    return f"{CHAIN_PREFIX}D-{lab}"


def drop_argvs(lab: str, percent: float, targets: list[tuple[str, int]]
               ) -> tuple[list[list[str]], list[list[str]]]:
    """(apply, revert) argvs for the drop fault (pure). `targets`: (address, port) copies go to."""
    chain, tag = drop_chain(lab), f"labctl:{lab}:drill-drop"
    comment = ["-m", "comment", "--comment", tag]
    jumps = [["OUTPUT", "-p", "tcp", "-d", addr, "--dport", str(port), *comment, "-j", chain]
             for addr, port in targets]
    apply = [["iptables", "-w", "-N", chain],
             ["iptables", "-w", "-A", chain, "-m", "statistic", "--mode", "random",
              "--probability", f"{percent / 100.0:.4f}", *comment, "-j", "DROP"]]
    apply += [["iptables", "-w", "-I", *j] for j in jumps]
    revert = [["iptables", "-w", "-D", *j] for j in jumps]
    revert += [["iptables", "-w", "-F", chain], ["iptables", "-w", "-X", chain]]
    return apply, revert


def drop(ctx: Context, step: FaultStep) -> Fault:
    """Drop `step.percent` % of the copies on the online host(s); a host that fails halfway
    is cleaned up before the error propagates. The revert tolerates rules already gone."""
    inv = ctx.inventory
    hosts = [h for h in inv.hosts.online if step.host in (None, h.name)]
    if not hosts:
        raise UsageError(f"drop: no online host named {step.host!r}",
                         hint="online hosts: " + ", ".join(h.name for h in inv.hosts.online))
    targets = sorted({(str(inv.target_address(s)), s.target_port) for s in inv.services})
    assert step.percent is not None
    apply, revert = drop_argvs(inv.lab, step.percent, targets)
    done: list[HostSpec] = []

    def undo() -> None:
        errors = []
        for spec in done:
            for argv in revert:
                res = ctx.hosts().transport(spec.name).run(argv)
                if not res.ok and "No chain" not in res.stderr and "does a matching" not in \
                        res.stderr and "Bad rule" not in res.stderr:
                    errors.append(f"[{spec.name}] {' '.join(argv)}: {res.stderr.strip()}")
        if errors:
            raise RemoteError("drop fault not fully removed: " + "; ".join(errors))

    for spec in hosts:
        done.append(spec)
        try:
            for argv in apply:
                ctx.run(spec, argv)
        except LabctlError:
            undo()
            raise
    names = ", ".join(h.name for h in hosts)
    return Fault("drop", f"{step.percent:g} % of copies dropped on {names} "
                          f"(chain {drop_chain(inv.lab)})", undo)


# ---------------------------------------------------------------- stall the target


def stall_target(ctx: Context, step: FaultStep) -> Fault:
    """SIGSTOP the lab target's nginx master and workers; the revert sends SIGCONT."""
    host = ctx.built_lab.hosts["target"]
    pidfile = host.dir / "nginx.pid"
    master = lab_pid(pidfile)
    if master is None:
        raise UsageError(f"stall-target: no nginx pid in {pidfile}")
    pids = process_tree(master)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    def resume() -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue

    return Fault("stall-target", f"target nginx stopped (SIGSTOP pids "
                                  f"{', '.join(map(str, pids))})", resume)


# ---------------------------------------------------------------- routes


def route_argvs(route: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(delete, restore) argvs for one route from `ip -j route` (pure)."""
    where = []
    if route.get("gateway"):
        where += ["via", str(route["gateway"])]
    if route.get("dev"):
        where += ["dev", str(route["dev"])]
    dst = str(route["dst"])
    delete = ["ip", "-4", "route", "del", dst, *where]
    restore = ["ip", "-4", "route", "replace", dst, *where]
    if route.get("protocol"):
        restore += ["proto", str(route["protocol"])]
    return delete, restore


def remove_route(ctx: Context, step: FaultStep) -> Fault:
    """Delete the target's route to a client network (default: the inventory's first); the
    revert puts back the route exactly as `ip -j route` showed it."""
    inv = ctx.inventory
    nets = [str(n) for n in inv.clients.networks]
    network = step.network or (nets[0] if nets else "")
    if not network:
        raise UsageError("remove-route: the inventory routes no client network "
                         "(two-server topology); nothing to remove")
    spec = inv.targets[0]
    out = ctx.run(spec, ["ip", "-j", "-4", "route", "show", network])
    try:
        routes = [r for r in json.loads(out or "[]") if r.get("dst") == network]
    except ValueError:
        routes = []
    if not routes:
        raise RemoteError(f"remove-route: no route to {network} on the target", host=spec.name,
                          hint="is the copy setup up? (`labctl status`)")
    delete, restore = route_argvs(routes[0])
    ctx.run(spec, delete)

    def put_back() -> None:
        ctx.run(spec, restore)

    return Fault("remove-route", f"route {' '.join(restore[4:])} removed on {spec.name}",
                  put_back)


def lab_pid(path: Path) -> Optional[int]:
    """The pid in a pidfile, or None when it is missing or not a number."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in _listdir(f"/proc/{p}/task"):
            try:
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text()
                         .split()]
            except (OSError, ValueError):
                continue
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# ---------------------------------------------------------------- netem


def netem_json(spec: NetemSpec) -> str:
    """The `--netem-file` text for these conditions (pure)."""
    return json.dumps({k: v for k, v in spec._asdict().items() if v}, sort_keys=True)


def tc_netem_argv(dev: str, spec: NetemSpec) -> list[str]:
    """`tc qdisc replace dev DEV root netem …` for these conditions (pure)."""
    argv = ["tc", "qdisc", "replace", "dev", dev, "root", "netem"]
    if spec.delay_ms or spec.jitter_ms:
        argv += ["delay", f"{spec.delay_ms:g}ms"]
        if spec.jitter_ms:
            argv.append(f"{spec.jitter_ms:g}ms")
    if spec.loss_pct:
        argv += ["loss", f"{spec.loss_pct:g}%"]
    if spec.reorder_pct:
        argv += ["reorder", f"{spec.reorder_pct:g}%"]
    if spec.rate_kbit:
        argv += ["rate", f"{spec.rate_kbit:g}kbit"]
    return argv


def target_has_netem(ctx: Context, spec: HostSpec) -> bool:
    """Whether the target's kernel has the netem qdisc (loaded, or loadable)."""
    probe = ["sh", "-c", "test -d /sys/module/sch_netem || modprobe -n -q sch_netem"]
    return ctx.hosts().transport(spec.name).run(probe).ok


def netem(ctx: Context, step: FaultStep) -> Fault:
    """Network conditions on the copy path to the target, never on production traffic:
    `tc` puts a netem qdisc on the target's interface towards the assistant (the replies
    to the copies); `engine` has every online host's tcpcopy hold, drop or reorder the
    copies it sends (its `--netem-file`, re-read on SIGHUP; any kernel). `auto` picks tc
    when the target's kernel has it. The Fault says which; the revert removes exactly that."""
    inv = ctx.inventory
    shaping = step.netem_spec()
    target = inv.targets[0]
    mechanism = step.mechanism
    why = ""
    if mechanism == "auto":
        has = target_has_netem(ctx, target)
        mechanism = "tc" if has else "engine"
        why = "" if has else f"; {target.name}'s kernel has no sch_netem"
    if mechanism == "tc":
        return _tc_netem(ctx, target, shaping)
    return _engine_netem(ctx, shaping, why)


def _tc_netem(ctx: Context, target: HostSpec, shaping: NetemSpec) -> Fault:
    """A netem qdisc on the target's interface towards the assistant, journaled on the target
    like every change of `up` (planned, applied, undone): `down` removes it even when the drill
    never got to its revert."""
    inv = ctx.inventory
    peer = inv.intercept_host if inv.hosts.assistant is not None else inv.hosts.online[0]
    out = ctx.run(target, ["ip", "-o", "-4", "route", "get", str(peer.address)])
    words = out.split()
    if "dev" not in words:
        raise RemoteError(f"netem: no route to {peer.address} on the target", host=target.name)
    dev = words[words.index("dev") + 1]
    t = ctx.hosts().transport(target.name)
    path = jr.journal_path(inv.remote_dir(target))
    journal = jr.read_remote(t, path)
    if journal is None:
        raise RemoteError("netem: no journal on the target", host=target.name,
                          hint="is the copy setup up? (`labctl status`)")
    change = Change(target.name, f"netem:{dev}", ChangeKind.QDISC,
                    f"netem {shaping.describe()} on {dev} (drill)",
                    (tuple(tc_netem_argv(dev, shaping)),), (("tc", "qdisc", "del", "dev", dev,
                                                              "root"),))
    entry = journal.plan_entry(change, jr.Snapshot(), time.time())
    jr.write_remote(t, path, journal)
    ctx.run(target, list(change.apply[0]))
    journal.mark(entry, "applied", time.time())
    jr.write_remote(t, path, journal)
    jr.save_local(journal)

    def remove() -> None:
        ctx.run(target, list(change.undo[0]))
        t2 = ctx.hosts().transport(target.name)
        now = jr.read_remote(t2, path)
        if now is None:
            return                      # `down` already took the journal away
        for e in now.entries:
            if e.seq == entry.seq and e.step == entry.step and e.may_be_in_place:
                now.mark(e, "undone", time.time(), "end-netem")
                jr.write_remote(t2, path, now)
                jr.save_local(now)
                break

    return Fault("netem", f"{shaping.describe()} on {target.name} {dev} (mechanism: tc netem, "
                          "journaled)", remove)


def _engine_netem(ctx: Context, shaping: NetemSpec, why: str) -> Fault:
    inv = ctx.inventory
    recs = []
    for spec in inv.hosts.online:
        rec = daemon_record(ctx, spec, "tcpcopy")
        if "--netem-file" not in rec.argv:
            raise UsageError(f"netem: tcpcopy on {spec.name} was started without --netem-file "
                             "(by an older labctl)", hint="run `labctl down` and `labctl up`")
        recs.append((spec, rec))
    done: list[tuple[HostSpec, DaemonRecord]] = []

    def apply(spec: HostSpec, rec: DaemonRecord, text: Optional[str]) -> None:
        t = ctx.hosts().transport(spec.name)
        path = dm.netem_file(rec)
        if text is None:
            t.run(["rm", "-f", path]).check()
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".netem", delete=False) as fh:
                fh.write(text)
            try:
                t.put(fh.name, path + ".tmp")
            finally:
                os.unlink(fh.name)
            t.run(["mv", "-f", path + ".tmp", path]).check()
        t.run(["pkill", "-HUP", "-F", rec.pid_file]).check()
        want = None if text is None else shaping._asdict()
        dm.Poller().until(f"tcpcopy to apply {'no' if text is None else 'the'} netem conditions",
                          spec.name, READY_TIMEOUT,
                          lambda: _netem_now(t, rec) == want)

    def undo() -> None:
        for spec, rec in done:
            apply(spec, rec, None)

    for spec, rec in recs:
        done.append((spec, rec))
        try:
            apply(spec, rec, netem_json(shaping))
        except LabctlError:
            undo()
            raise
    names = ", ".join(spec.name for spec, _ in recs)
    return Fault("netem", f"{shaping.describe()} on the copies (mechanism: engine, tcpcopy on "
                          f"{names}{why})", undo)


def _netem_now(t: Any, rec: DaemonRecord) -> Optional[dict[str, float]]:
    """The conditions tcpcopy reports in its stats (None: none)."""
    stats = dm.read_stats(t, rec.stats_file) or {}
    now = stats.get("netem")
    values = {k: (now or {}).get(k, 0) for k in NetemSpec._fields}
    return values if any(values.values()) else None


INJECTORS: dict[str, Injector] = {"stop-intercept": stop_intercept, "drop": drop,
                                  "stall-target": stall_target, "remove-route": remove_route,
                                  "netem": netem}
