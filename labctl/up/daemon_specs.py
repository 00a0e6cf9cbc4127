"""Which daemons `up` starts, where, in which order, and what "ready" means for each.

intercept first (on the assistant, or the target in two-server), ready when it listens on the
channel port; then tcpcopy on every online host, ready when its stats file reports a
connection to every intercept.
"""

from __future__ import annotations

from typing import Any, Callable

from labctl.errors import LabctlError
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Transport
from labctl.up import daemons as dm
from labctl.up.engine_args import EnginePaths, intercept_argv, tcpcopy_argv
from labctl.up.journal import DaemonRecord

Ready = Callable[[Transport, DaemonRecord], Any]


def _tcpcopy_paths(inv: Inventory, online: HostSpec, facts: dict[str, Any],
                   key_path: Callable[[str], str]) -> EnginePaths:
    """tcpcopy's key file, and with engine.datalink its `-o` device and next-hop MACs."""
    paths = EnginePaths(key_file=key_path(online.name))
    if not inv.engine.datalink:
        return paths
    from dataclasses import replace

    from labctl.up.datalink import resolve_next_hops

    res = resolve_next_hops(inv, online, facts)
    if res.hops is None:
        first = res.problems[0] if res.problems else None
        raise LabctlError(f"engine.datalink: {first.message if first else 'next hop unknown'}",
                         hint=first.hint if first else None, host=online.name)
    return replace(paths, output_device=res.hops.device, next_hop_macs=res.hops.macs)


def daemon_specs(
    inv: Inventory, facts: dict[str, Any], key_path: Callable[[str], str],
    timeout: float = 30.0,
) -> list[tuple[HostSpec, dm.DaemonSpec, Ready]]:
    """(host, daemon, readiness wait) in start order (pure, given the facts)."""
    ihost = inv.intercept_host
    ifname = getattr(facts.get(ihost.name), "ifname", None)
    iargs = intercept_argv(inv, EnginePaths(key_file=key_path(ihost.name), interface=ifname))
    port = inv.intercept.port

    def listening(t: Transport, rec: DaemonRecord) -> None:
        dm.wait_listening(t, rec, port, timeout=timeout)

    def connected(t: Transport, rec: DaemonRecord) -> None:
        dm.wait_connected(t, rec, timeout=timeout)

    out: list[tuple[HostSpec, dm.DaemonSpec, Ready]] = [
        (ihost, dm.DaemonSpec("intercept", tuple(iargs)), listening)]
    for online in inv.hosts.online:
        targs = tcpcopy_argv(inv, online, _tcpcopy_paths(inv, online, facts, key_path))
        out.append((online, dm.DaemonSpec("tcpcopy", tuple(targs)), connected))
    return out
