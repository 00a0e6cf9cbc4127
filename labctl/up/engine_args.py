"""Inventory -> engine flags (pure). The daemon layer adds the program, pid/stats/log files.

    tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths(key_file=".../channel.key"))
      -> ["-x", "80-192.168.44.137:80", "-s", "192.168.44.136", "-p", "36524", "-c", ...]
    intercept_argv(inv, EnginePaths(key_file=..., interface="eth0"))
      -> ["-F", "tcp and src port 80 and src host 192.168.44.137", "-p", "36524", "-b", ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from engine.http.select import SAFE_METHODS
from labctl.errors import UsageError
from labctl.inventory.models import HostSpec, Inventory, Select


@dataclass(frozen=True)
class EnginePaths:
    """Remote paths and host details the flags need; None = leave the flag out."""

    key_file: Optional[str] = None
    stats_file: Optional[str] = None
    #: engine.metrics_file for this daemon (placeholders replaced)
    metrics_file: Optional[str] = None
    pid_file: Optional[str] = None
    log_file: Optional[str] = None
    #: intercept `-i`: the capture interface (the intercept host's interface, from facts)
    interface: Optional[str] = None
    #: tcpcopy with engine.datalink: `-o` device and next-hop MAC per target address (facts;
    #: see labctl.up.datalink)
    output_device: Optional[str] = None
    next_hop_macs: Mapping[str, str] = field(default_factory=dict)
    #: engine.workers resolved for this daemon's host, and (tcpcopy) for the intercept host;
    #: 1 = no flag at all (the argv of a single-worker engine stays as it always was)
    workers: int = 1
    intercept_workers: int = 1


def _workers(paths: EnginePaths, tcpcopy: bool) -> list[str]:
    """`--workers N` (N > 1); tcpcopy also `--intercept-workers M` (M > 1): intercept with M
    workers listens on its port P..P+M-1, one channel per worker."""
    out = ["--workers", str(paths.workers)] if paths.workers > 1 else []
    if tcpcopy and paths.intercept_workers > 1:
        out += ["--intercept-workers", str(paths.intercept_workers)]
    return out


def _common(paths: EnginePaths) -> list[str]:
    out: list[str] = []
    for flag, value in (("--key-file", paths.key_file), ("--stats-file", paths.stats_file),
                        ("--metrics-file", paths.metrics_file),
                        ("-P", paths.pid_file), ("-l", paths.log_file)):
        if value:
            out += [flag, value]
    return out


def transfer_spec(inv: Inventory, macs: Optional[Mapping[str, str]] = None) -> str:
    """`-x`: `[onlineIP:]port-targetIP:targetPort[@MAC]` for every (service, target), comma
    separated (`@MAC` when `macs`, keyed by target address, is given). Several items for one
    online port copy every session to each target, each copy on its own fake tuple."""
    items = []
    for s, _, address in inv.copy_destinations():
        left = f"{s.online_address}:{s.port}" if s.online_address else str(s.port)
        target = str(address)
        mac = f"@{macs[target]}" if macs is not None else ""
        items.append(f"{left}-{target}:{s.target_port}{mac}")
    return ",".join(items)


def _datalink_args(inv: Inventory, online: HostSpec, paths: EnginePaths) -> list[str]:
    """`-x` with next-hop MACs and `-o DEV`; refused when the facts did not provide them."""
    missing = sorted({str(a) for a in inv.target_addresses()} - set(paths.next_hop_macs))
    if not paths.output_device or missing:
        what = ", ".join(missing) if missing else "the output device"
        raise UsageError(
            f"engine.datalink: next hop unknown for {what} on {online.name}",
            hint="see the datalink.mac_unknown finding of `labctl plan`, "
                 "or set engine.datalink: false")
    return ["-x", transfer_spec(inv, paths.next_hop_macs), "-o", paths.output_device]


def tcpcopy_argv(inv: Inventory, online: HostSpec, paths: EnginePaths) -> list[str]:
    """tcpcopy flags (without the program name) for one online host; with engine.datalink
    `-x` carries `@MAC` per target and `-o DEV` follows (from `paths`, i.e. from facts)."""
    e = inv.engine
    xargs = (_datalink_args(inv, online, paths) if e.datalink
             else ["-x", transfer_spec(inv)])
    argv = [*xargs, "-s", str(inv.intercept_host.address),
            "-p", str(inv.intercept.port), "-c", ",".join(inv.pool(online)),
            "-C", str(e.connections), "-t", str(e.session_timeout),
            "-k", str(e.keepalive_timeout), "-m", str(e.memory_mb),
            "--max-sessions", str(e.max_sessions), *_workers(paths, tcpcopy=True)]
    if e.multiplier > 1:
        argv += ["-n", str(e.multiplier)]
    if e.sample_percent < 100:
        argv += ["-r", str(e.sample_percent)]
    if e.lonely:
        argv.append("-L")
        if e.hold_timeout != 30:    # tcpcopy's own default otherwise
            argv += ["--hold-timeout", str(e.hold_timeout)]
    if e.target_stall_s is not None:    # unset: tcpcopy's own default
        argv += ["--target-stall-s", f"{e.target_stall_s:g}"]
    if e.no_wait:
        argv.append("-W")
    argv += _ring(inv) + _gather(inv)
    if e.capture_acks:
        argv.append("--capture-acks")
    if e.select is not None:
        argv += select_args(e.select)
    return argv + _common(paths)


def select_args(select: Select) -> list[str]:
    """tcpcopy's selection flags, in a fixed order: the rules (allow/deny host, path, method,
    header, each as listed), then `--safe [--safe-methods]`, then `--on-unparsable` and
    `--non-http` when they are not the default (copy). No rule and defaults: no flag at all."""
    argv = [word for flag, value in select.rule_flags() for word in (flag, value)]
    if select.safe:
        argv.append("--safe")
        if tuple(select.safe_methods) != SAFE_METHODS:
            argv += ["--safe-methods", ",".join(select.safe_methods)]
    for flag, value in (("--on-unparsable", select.on_unparsable),
                        ("--non-http", select.non_http)):
        if value != "copy":
            argv += [flag, value]
    return argv


_WORDS = {"allow_host": "host", "allow_path": "path", "allow_method": "method",
          "allow_header": "header", "deny_host": "host", "deny_path": "path",
          "deny_header": "header"}


def select_summary(select: Select) -> str:
    """The selection in words, for `plan`: `tcpcopy copies only: host a.example or
    *.b.example; path /api; safe methods (GET, HEAD, OPTIONS); never: path /admin`."""
    only = [f"{_WORDS[k]} " + " or ".join(getattr(select, k)) for k in
            ("allow_host", "allow_path", "allow_method", "allow_header") if getattr(select, k)]
    if select.safe:
        only.append(f"safe methods ({', '.join(select.safe_methods)})")
    never = [f"{_WORDS[k]} " + " or ".join(getattr(select, k)) for k in
             ("deny_host", "deny_path", "deny_header") if getattr(select, k)]
    parts = []
    if only:
        parts.append("tcpcopy copies only: " + "; ".join(only))
    if never:
        parts.append(("never: " if only else "tcpcopy copies every request except: ")
                     + "; ".join(never))
    if not parts:
        parts.append("tcpcopy copies every request (engine.select has no rule)")
    rest = [f"unparsable streams: {select.on_unparsable}", f"non-HTTP connections: "
            f"{select.non_http}"]
    return ", ".join(parts) + " (" + ", ".join(rest) + ")"


def response_filter(inv: Inventory) -> str:
    """intercept `-F`: every target's replies from the service ports."""
    ports = sorted({s.target_port for s in inv.services})
    hosts = [str(a) for a in inv.target_addresses()]
    port_part = (f"src port {ports[0]}" if len(ports) == 1
                 else "(" + " or ".join(f"src port {p}" for p in ports) + ")")
    host_part = (f"src host {hosts[0]}" if len(hosts) == 1
                 else "(" + " or ".join(f"src host {h}" for h in hosts) + ")")
    return f"tcp and {port_part} and {host_part}"


def intercept_argv(inv: Inventory, paths: EnginePaths) -> list[str]:
    """intercept flags (without the program name), for the intercept host."""
    bind = inv.intercept.bind or inv.intercept_host.address
    argv = ["-F", response_filter(inv), "-p", str(inv.intercept.port), "-b", str(bind)]
    if paths.interface:
        argv += ["-i", paths.interface]
    return argv + _ring(inv) + _gather(inv) + _workers(paths, tcpcopy=False) + _common(paths)


def _gather(inv: Inventory) -> list[str]:
    """`--gather-ms N` when engine.gather_ms is set; unset: no flag, the engine's default."""
    n = inv.engine.gather_ms
    return [] if n is None else ["--gather-ms", f"{n:g}"]


def _ring(inv: Inventory) -> list[str]:
    """`--capture-ring-mb N` when engine.capture_ring_mb is set (0: recv()); unset: no flag,
    the engine's default ring."""
    n = inv.engine.capture_ring_mb
    return [] if n is None else ["--capture-ring-mb", str(n)]
