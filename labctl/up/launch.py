"""The daemon changes of a plan (pure): which engine daemons `up` starts, where, in which order,
with which flags, how to stop them, and what "ready" means for each.

intercept first (on the assistant, or the target in two-server), ready when it listens on the
channel port; then tcpcopy on every online host, ready when its stats file reports a connection
to every intercept. Each is a `Change(kind=DAEMON)` carrying a `DaemonLaunch`: `plan` shows it,
a saved plan records it, apply starts it and waits for its readiness, rollback and `down` stop it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from labctl.errors import LabctlError
from labctl.hosts import daemons as dm
from labctl.hosts import supervision as sv
from labctl.hosts.journal import DaemonRecord, host_dir
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import Change, ChangeKind, DaemonLaunch, Readiness
from labctl.up.datalink import resolve_next_hops
from labctl.up.engine_args import EnginePaths, intercept_argv, tcpcopy_argv
from labctl.up.options import KEY_NAME
from labctl.up.runtime import hint_for, resolve
from labctl.up.ship import remote_pyz


def key_path(inv: Inventory, host: str) -> str:
    """Where the channel key lives on `host` (shipped by `up` before the daemons start)."""
    return f"{host_dir(inv.state_dir, inv.lab, host)}/{KEY_NAME}"


def _tcpcopy_paths(inv: Inventory, online: HostSpec, facts: dict[str, Any], workers: int,
                   intercept_workers: int) -> EnginePaths:
    """tcpcopy's key file and workers, and with engine.datalink its `-o` device and next-hop
    MACs."""
    paths = EnginePaths(key_file=key_path(inv, online.name), workers=workers,
                        intercept_workers=intercept_workers,
                        metrics_file=inv.engine.metrics_path("tcpcopy", online.name))
    if not inv.engine.datalink:
        return paths
    res = resolve_next_hops(inv, online, facts)
    if res.hops is None:
        first = res.problems[0] if res.problems else None
        raise LabctlError(f"engine.datalink: {first.message if first else 'next hop unknown'}",
                          hint=first.hint if first else None, host=online.name)
    return replace(paths, output_device=res.hops.device, next_hop_macs=res.hops.macs)


def daemon_change(inv: Inventory, host: str, spec: dm.DaemonSpec, ready: Readiness,
                  systemd: bool) -> Change:
    """One DAEMON change: launch argv, stop argv (the dead-man's undo) and the files (pure)."""
    hdir = host_dir(inv.state_dir, inv.lab, host)
    rec = dm.record_for(remote_pyz(hdir), hdir, inv.lab, spec, systemd)
    launch = DaemonLaunch(spec.name, spec.args, rec.pid_file, rec.stats_file, rec.log_file,
                          ready, rec.unit, spec.runtime, spec.workers, rec.supervisor)
    return Change(host, f"daemon:{spec.name}", ChangeKind.DAEMON, f"start {spec.name}",
                  (tuple(rec.argv),), tuple(tuple(a) for a in dm.undo_argvs(rec)),
                  daemon=launch)


def host_engine(inv: Inventory, host: str, facts: dict[str, Any]) -> tuple[str, int]:
    """(runtime, workers) of the daemon on `host`; LabctlError naming the host when the
    facts cannot settle them (the `runtime.unavailable` finding says the same at preflight)."""
    chosen = resolve(inv, host, facts)
    if chosen.runtime is None or chosen.workers is None:
        raise LabctlError(chosen.problems[0] if chosen.problems else "engine.runtime: unknown",
                          hint=hint_for(chosen.problems[0]) if chosen.problems else None,
                          host=host)
    return chosen.runtime, chosen.workers


def daemon_changes(inv: Inventory, facts: dict[str, Any]) -> list[Change]:
    """Every daemon `up` starts, in start order, each under its host's interpreter
    (engine.runtime) with its workers (engine.workers). Raises LabctlError (naming the host)
    when one cannot be built from these facts (e.g. engine.datalink with no next-hop MAC)."""
    def systemd(name: str) -> bool:
        return bool(getattr(facts.get(name), "systemd", False))

    ihost = inv.intercept_host
    iruntime, iworkers = host_engine(inv, ihost.name, facts)
    ifname = getattr(facts.get(ihost.name), "ifname", None)
    iargs = intercept_argv(inv, EnginePaths(
        key_file=key_path(inv, ihost.name), interface=ifname, workers=iworkers,
        metrics_file=inv.engine.metrics_path("intercept", ihost.name)))
    supervise = inv.engine.supervise
    ispec = dm.DaemonSpec("intercept", tuple(iargs), iruntime, iworkers, supervise)
    out = [daemon_change(inv, ihost.name, ispec, Readiness("listening", inv.intercept.port),
                         systemd(ihost.name))]
    for online in inv.hosts.online:
        runtime, workers = host_engine(inv, online.name, facts)
        targs = tcpcopy_argv(inv, online, _tcpcopy_paths(inv, online, facts, workers, iworkers))
        out.append(daemon_change(inv, online.name,
                                 dm.DaemonSpec("tcpcopy", tuple(targs), runtime, workers,
                                               supervise),
                                 Readiness("connected"), systemd(online.name)))
    return out


def record_of(change: Change) -> DaemonRecord:
    """The journal's record of the daemon a DAEMON change starts."""
    d = change.daemon
    if d is None:
        raise ValueError(f"{change.step} is not a daemon change")
    engine_sv = d.supervisor == sv.ENGINE
    sf = sv.files(str(PurePosixPath(d.pid_file).parent), d.name)
    return DaemonRecord(name=d.name, argv=list(change.apply[0]), pid_file=d.pid_file,
                        stats_file=d.stats_file, log_file=d.log_file, unit=d.unit,
                        runtime=d.runtime, workers=d.workers, supervisor=d.supervisor,
                        supervisor_pid_file=sf["pid"] if engine_sv else "",
                        supervisor_state_file=sf["state"] if engine_sv else "")
