"""tcpcopy's parts from its flags (pure, but for the senders' sockets): the session table's
configuration, the kernel capture filter, the senders, the start-up log lines."""

from __future__ import annotations

import os
import resource
from typing import Dict, List, Optional, Sequence, Union

from engine import INTERNAL_VERSION, __version__
from engine.actions import SendPacket
from engine.bpf import BpfError, compile_expression, tcp_port_filter
from engine.netem import Netem
from engine.options import TcpcopyOptions, selection
from engine.packets import ip_ntoa
from engine.pypygc import gc_banner
from engine.rawsock import LinkSender, RawIPSender
from engine.session.config import Route, SessionConfig

Sender = Union[RawIPSender, LinkSender]


class StartupError(Exception):
    """tcpcopy cannot start (message for the log/stderr)."""


def session_config(o: TcpcopyOptions) -> SessionConfig:
    routes = [Route(t.online_ip, t.online_port, t.target_ip, t.target_port, t.src_mac,
                    t.target_mac) for t in o.transfers]
    return SessionConfig(
        routes, fake_ips=o.fake_ips, replicas=o.replicas, port_shift=o.port_shift,
        sample_pct=o.sample_pct, session_timeout=o.session_timeout,
        keepalive_timeout=o.keepalive_timeout, mtu=o.mtu, mss=o.mss, only_full=o.only_full,
        no_wait=o.no_wait, max_sessions=o.max_sessions,
        session_buffer_bytes=o.session_buffer_bytes, memory_limit=o.memory_mb << 20,
        selection=selection(o), hold_timeout=o.hold_timeout if o.lonely else 0.0,
        target_stall=o.target_stall_s)


def current_rss_kb() -> int:
    """Resident set size now (not the peak: shedding must be able to bring it back down)."""
    try:                    # os-level: 3 system calls, where a text open() takes 9
        fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 256)
        finally:
            os.close(fd)
        return int(text.split()[1]) * resource.getpagesize() // 1024
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def capture_program(o: TcpcopyOptions) -> list:
    """The kernel filter: ``-F`` compiled, else the copied ports (and online addresses)."""
    if o.bpf_filter:
        try:
            return compile_expression(o.bpf_filter)
        except BpfError as exc:
            raise StartupError(str(exc)) from None
    hosts = [t.online_ip for t in o.transfers]
    # the client's pure ACKs carry nothing a copy needs except the third handshake ACK
    # (greeting pacing, --capture-acks): dropping them in the kernel halves the packets
    # handled per keep-alive request
    return tcp_port_filter([t.online_port for t in o.transfers],
                           hosts if all(hosts) else (), "dst",
                           skip_pure_acks=not o.capture_acks)


def make_senders(o: TcpcopyOptions, routes: Sequence[Route]) -> Dict[int, Sender]:
    """One sender per route: the ``-o`` link sender towards its MAC, else one raw IP socket."""
    if o.output_device:
        return {r.index: LinkSender(o.output_device, r.target_mac) for r in routes}
    raw = RawIPSender()
    return {r.index: raw for r in routes}


def banner_lines(o: TcpcopyOptions, cfg: SessionConfig,
                 netem: Optional[Netem[SendPacket]]) -> List[str]:
    """The start-up log lines (the original texts first)."""
    out = [f"tcpcopy version:{__version__}", f"tcpcopy internal version:{INTERNAL_VERSION}"]
    for t in o.transfers:
        online = ip_ntoa(t.online_ip) if t.online_ip else "*"
        out.append(f"target:{online}:{t.online_port}-{ip_ntoa(t.target_ip)}:{t.target_port}")
    out.append("TC_COMBINED mode")
    if o.workers > 1:
        out.append(f"worker {o.worker} of {o.workers}: fake ports % {o.workers} == "
                   f"{o.worker}, intercept ports +{o.worker % o.intercept_workers}")
    out.append(f"session timeout:{int(cfg.session_timeout)}")
    out.append(f"keepalive timeout:{int(cfg.keepalive_timeout)}")
    out.append(f"parallel connections per target:{o.connections}")
    out.append("s parameter:" + ",".join(f"{h}:{p}" for h, p in o.intercepts))
    if netem is not None:
        out.append(f"netem on the copies: {netem.spec.describe()}")
    if o.select_rules or o.safe:
        rules = [f"{f} {v}" for f, v in o.select_rules] + (["--safe"] if o.safe else [])
        out.append("copying only: " + "; ".join(rules))
    if o.bpf_filter:
        out.append(f"filter = {o.bpf_filter}")
    gc_line = gc_banner()
    if gc_line:
        out.append(gc_line)
    return out
