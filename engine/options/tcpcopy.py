"""tcpcopy command-line flags: pure parsing and validation (no I/O).

``parse_tcpcopy_args(argv) -> TcpcopyOptions`` raises ``OptionsError`` with a one-line message
naming the flag (the daemon prints it and exits 2). Original short flags (study §1) plus long
forms; new long-only options: ``--key-file``, ``--stats-file``, ``--stats-interval``,
``--max-sessions``, ``--session-buffer-bytes``, ``--reconnect-interval``, ``--hold-timeout``,
``--target-stall-s``,
``--capture-ring-mb``. Offline replay (the C tool's offline build, whose ``-i FILE`` clashes
with our live ``-i`` interfaces): ``--pcap FILE`` with ``-a`` (acceleration), ``-I`` (idle gaps
over this many ms are skipped), ``-T`` (times to replay the file) and ``--drain-timeout``.
``--workers N`` / ``--intercept-workers M``: N worker processes (``engine.workers``), worker k
talking to intercept port ``P + k % M``; M divides N.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import List, NoReturn, Optional, Sequence, Tuple

from engine.http.select import SAFE_METHODS, RuleError, Selection
from engine.loop import DEFAULT_GATHER_MS, MAX_GATHER_MS
from engine.netem import NetemSpec, add_flags, check_spec, spec_of
from engine.options.addresses import (
    OptionsError,
    Transfer,
    parse_fake_ips,
    parse_intercepts,
    parse_transfer,
    split_items,
)
from engine.rawsock.ring import DEFAULT_CAPTURE_RING_MB, MAX_CAPTURE_RING_MB

DEFAULT_INTERCEPT_PORT = 36524
#: --target-stall-s: seconds of target silence before tcpcopy stops admitting sessions for it
#: (engine.session.stall; chosen from the P3 measurement, RELIABILITY.md)
DEFAULT_TARGET_STALL_S = 0.5
MAX_WORKERS = 64


@dataclass(frozen=True)
class TcpcopyOptions:
    transfers: List[Transfer] = field(default_factory=list)
    intercepts: List[Tuple[str, int]] = field(default_factory=list)
    intercept_port: int = DEFAULT_INTERCEPT_PORT
    connections: int = 2
    fake_ips: List[int] = field(default_factory=list)
    replicas: int = 1
    port_shift: int = 0
    sample_pct: int = 0
    session_timeout: float = 600.0
    keepalive_timeout: Optional[float] = None
    memory_mb: int = 2048
    mtu: int = 1500
    mss: int = 1460
    log_file: Optional[str] = None
    pid_file: Optional[str] = None
    daemon: bool = False
    only_full: bool = False
    no_wait: bool = False
    lonely: bool = False
    bpf_filter: Optional[str] = None
    interfaces: List[str] = field(default_factory=list)
    output_device: Optional[str] = None
    key_file: Optional[str] = None
    stats_file: Optional[str] = None
    metrics_file: Optional[str] = None
    stats_interval: float = 1.0
    max_sessions: int = 65536
    session_buffer_bytes: int = 16 * 1024 * 1024
    reconnect_interval: float = 0.5
    hold_timeout: float = 30.0
    target_stall_s: float = DEFAULT_TARGET_STALL_S
    capture_acks: bool = False
    #: TPACKET_V3 capture ring per capture socket, MiB (0 = recv() one frame per system call)
    capture_ring_mb: int = DEFAULT_CAPTURE_RING_MB
    #: an idle wake-up pauses this long before handling its events (engine.loop), ms
    gather_ms: float = DEFAULT_GATHER_MS
    pcap: Optional[str] = None
    accelerate: float = 1.0
    idle_skip_ms: int = 0
    repeat: int = 1
    drain_timeout: float = 120.0
    #: per-request selection, in the order given: (flag, value), e.g. ("--allow-path", "/api")
    select_rules: Tuple[Tuple[str, str], ...] = ()
    safe: bool = False
    safe_methods: Tuple[str, ...] = SAFE_METHODS
    on_unparsable: str = "copy"
    non_http: str = "copy"
    #: network conditions applied to the copies this tcpcopy sends (``engine.netem``)
    netem: NetemSpec = field(default_factory=NetemSpec)
    netem_file: Optional[str] = None
    workers: int = 1
    intercept_workers: int = 1
    #: set by the parent for one worker process (not flags): its index and the base id of its
    #: PACKET_FANOUT groups
    worker: int = 0
    fanout_group: int = 0
    show_help: bool = False
    show_version: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise OptionsError(message)


class _RuleAction(argparse.Action):
    """Selection rules keep their order across flags: ``rules`` gets (flag, value) pairs."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: Optional[str] = None) -> None:
        flag = next(o for o in self.option_strings if o.startswith("--"))
        namespace.rules = [*getattr(namespace, "rules", []), (flag, str(values))]


SELECT_FLAGS = (
    ("--allow-host", "HOST", "copy only requests for this host (exact, or *.domain)"),
    ("--deny-host", "HOST", "never copy requests for this host (exact, or *.domain)"),
    ("--allow-path", "PATH", "copy only requests whose path starts with PATH (or ~REGEX)"),
    ("--deny-path", "PATH", "never copy requests whose path starts with PATH (or ~REGEX)"),
    ("--allow-method", "M[,M..]", "copy only requests with one of these methods"),
    ("--allow-header", "NAME:REGEX", "copy only requests with a NAME field matching REGEX"),
    ("--deny-header", "NAME:REGEX", "never copy requests with a NAME field matching REGEX"),
)


def _parser() -> _Parser:
    p = _Parser(prog="tcpcopy", add_help=False, allow_abbrev=False)
    a = p.add_argument
    a("-x", "--transfer", action="append", default=[], metavar="[IP:]PORT-TIP:TPORT",
      help='copy traffic to [IP:]PORT to TIP:TPORT (repeatable, comma list; @MAC suffixes with -o)')
    a("-s", "--intercepts", "--server", action="append", default=[], metavar="IP[:PORT],..",
      help='intercept servers (repeatable, comma list); port defaults to -p')
    a("-p", "--port", type=int, default=DEFAULT_INTERCEPT_PORT,
      help='default intercept port (%(default)s)')
    a("-C", "--connections", type=int, default=2,
      help='channel connections per intercept (%(default)s, max 11)')
    a("-c", "--client-ips", action="append", default=[], metavar="IP|a.b.c.x,..",
      help='rewrite client addresses into this pool (sticky per real client; a.b.c.x = .1-.254)')
    a("-n", "--replicas", type=int, default=1,
      help='copy every session N times, on collision-free tuples (%(default)s)')
    a("-f", "--port-shift", type=int, default=0,
      help='port-shift factor 0-255 so several tcpcopy instances share one target')
    a("-r", "--sample", type=int, default=0, metavar="PCT",
      help='copy only PCT %% of sessions, 1-99 (0 = all)')
    a("-t", "--session-timeout", type=float, default=600.0, metavar="S",
      help='drop a session after S s without a response (%(default)s)')
    a("-k", "--keepalive-timeout", type=float, default=None, metavar="S",
      help='idle keep-alive timeout (default -t + 120)')
    a("-m", "--memory-limit", type=int, default=2048, metavar="MB",
      help='RSS cap: shed largest buffers, then oldest sessions; never exit (%(default)s MB)')
    a("-M", "--mtu", type=int, default=1500,
      help='MTU towards the target; larger captured frames are re-segmented (%(default)s)')
    a("-D", "--mss", type=int, default=1460,
      help='MSS option of faked SYNs (%(default)s)')
    a("-l", "--log-file",
      help='log file (default stderr)')
    a("-P", "--pid-file",
      help='pid file, written at start and removed at exit')
    a("-d", "--daemon", action="store_true",
      help='run in the background')
    a("-O", "--only-full", action="store_true",
      help='copy only sessions whose SYN was seen (no faked handshakes)')
    a("-W", "--no-wait", action="store_true",
      help="do not pace requests on the target's responses")
    a("-L", "--lonely", action="store_true",
      help='keep running when every intercept is lost; reconnect and re-register routes')
    a("-F", "--filter",
      help='capture BPF expression; overrides the filter built from -x')
    a("-i", "--interface", action="append", default=[],
      help='capture interfaces (comma list; default: all up, non-loopback)')
    a("-o", "--output-device",
      help='send copies as Ethernet frames from this interface (no IP stack, conntrack, iptables)')
    a("--capture-acks", action="store_true",
      help="also capture the client's pure ACKs (the kernel filter drops them by default); "
           "holds a first request until the target's greeting (SMTP, MySQL, FTP)")
    a("--capture-ring-mb", type=int, default=DEFAULT_CAPTURE_RING_MB, metavar="MB",
      help="memory-mapped TPACKET_V3 capture ring per capture socket, in MiB; one wake-up "
           "reads a whole block of frames (%(default)s; 0 = recv() one frame at a time)")
    a("--gather-ms", type=float, default=DEFAULT_GATHER_MS, metavar="MS",
      help="when a wake-up found the daemon idle, wait this long before handling it, so the "
           "frames and records of the next MS are handled in one wake-up (%(default)s; "
           f"0-{MAX_GATHER_MS:g}; 0 = off)")
    a("--pcap", metavar="FILE",
      help='offline replay: read client packets from this pcap file instead of capturing')
    a("-a", "--accelerate", type=float, default=1.0,
      help='offline: replay the file N times faster (%(default)s)')
    a("-I", "--idle-skip", type=int, default=0, metavar="MS",
      help='offline: skip idle gaps longer than MS milliseconds (0 = keep them)')
    a("-T", "--repeat", type=int, default=1,
      help='offline: replay the whole file N times (%(default)s)')
    a("--drain-timeout", type=float, default=120.0, metavar="S",
      help='offline: after the file, wait up to S s for sessions to finish (%(default)s)')
    for flag, metavar, text in SELECT_FLAGS:
        a(flag, action=_RuleAction, dest="rules", default=[], metavar=metavar,
          help=f"{text} (HTTP/1.x, per request; repeatable; deny wins)")
    a("--safe", action="store_true",
      help="copy only idempotent requests (--safe-methods): a target never repeats a write")
    a("--safe-methods", default=",".join(SAFE_METHODS), metavar="M[,M..]",
      help="the methods --safe copies (%(default)s)")
    a("--on-unparsable", default="copy", choices=("copy", "skip"),
      help="the rest of a connection that cannot be framed as HTTP/1.x (%(default)s)")
    a("--non-http", default="copy", choices=("copy", "skip"),
      help="a connection whose first bytes are not HTTP/1.x, with a selection (%(default)s)")
    add_flags(p)
    a("-h", "--help", action="store_true",
      help='show this help')
    a("-v", "--version", action="store_true",
      help='show the version')
    a("--key-file",
      help='shared key file: HMAC-SHA256 challenge-response on every channel')
    a("--stats-file",
      help='write counters as JSON here (atomically)')
    a("--stats-interval", type=float, default=1.0,
      help='seconds between stats-file writes (%(default)s)')
    a("--metrics-file", metavar="PATH",
      help='also write the counters in the Prometheus text format here (atomically, with '
           'the stats file: for node_exporter\'s textfile collector)')
    a("--max-sessions", type=int, default=65536,
      help='session table cap; sessions beyond it are counted as table_full (%(default)s)')
    a("--session-buffer-bytes", type=int, default=16 * 1024 * 1024,
      help='per-session buffer cap; a session over it is shed and counted (%(default)s)')
    a("--reconnect-interval", type=float, default=0.5,
      help='longest delay between intercept reconnect attempts with -L; the first comes '
           '0.1 s after the loss, doubling (%(default)s)')
    a("--hold-timeout", type=float, default=30.0, metavar="SECONDS",
      help='with -L, hold sessions this long while no intercept is connected, to resume them '
           'when one is back (%(default)s; 0: refuse new sessions then)')
    a("--target-stall-s", type=float, default=DEFAULT_TARGET_STALL_S, metavar="S",
      help="the target answered none of several requests for S s (its application frozen): "
           "refuse new sessions and shed those holding client bytes for it until it answers "
           "again, so tcpcopy's memory stays flat (%(default)s; 0 = off)")
    a("--workers", type=int, default=1, metavar="N",
      help='worker processes, flows spread over them by the kernel (1-64, %(default)s)')
    a("--intercept-workers", type=int, default=1, metavar="M",
      help='workers of each intercept (its --workers): worker k uses intercept port P + k %% M; '
           'M must divide --workers (%(default)s)')
    return p


def usage() -> str:
    return _parser().format_help()


def _check_range(value: float, lo: float, hi: float, flag: str) -> None:
    if not lo <= value <= hi:
        raise OptionsError(f"{flag}: {value:g} out of range ({lo:g}-{hi:g})")


def parse_tcpcopy_args(argv: Sequence[str]) -> TcpcopyOptions:
    """Parse and validate tcpcopy's flags. Raises OptionsError (one line, names the flag)."""
    ns, rest = _parser().parse_known_args(list(argv))
    if rest:
        raise OptionsError(f"unknown argument {rest[0]!r}")
    if ns.help or ns.version:
        return TcpcopyOptions(show_help=ns.help, show_version=ns.version)
    transfers = [parse_transfer(i) for i in split_items(ns.transfer)]
    if not transfers:
        raise OptionsError("-x is required (e.g. -x 80-10.0.0.2:80)")
    _check_range(ns.port, 1, 65535, "-p")
    intercepts = parse_intercepts(split_items(ns.intercepts), ns.port)
    if not intercepts:
        raise OptionsError("-s is required (the intercept address(es))")
    if ns.output_device and any(t.target_mac is None for t in transfers):
        raise OptionsError("-x: with -o every item needs the next-hop MAC (…:port@aa:bb:..)")
    _check_range(ns.connections, 1, 11, "-C")
    _check_range(ns.replicas, 1, 1023, "-n")
    _check_range(ns.port_shift, 0, 255, "-f")
    _check_range(ns.sample, 0, 100, "-r")
    _check_range(ns.session_timeout, 1, 10**7, "-t")
    if ns.keepalive_timeout is not None:
        _check_range(ns.keepalive_timeout, 1, 10**7, "-k")
    _check_range(ns.memory_limit, 1, 10**7, "-m")
    _check_range(ns.mtu, 68, 65535, "-M")
    _check_range(ns.mss, 64, 65495, "-D")
    if ns.mss > ns.mtu - 40:
        raise OptionsError(f"-D: MSS {ns.mss} does not fit the MTU {ns.mtu} (-M) minus 40")
    _check_range(ns.stats_interval, 0.01, 86400, "--stats-interval")
    _check_range(ns.max_sessions, 1, 10**8, "--max-sessions")
    _check_range(ns.session_buffer_bytes, 4096, 1 << 40, "--session-buffer-bytes")
    _check_range(ns.reconnect_interval, 0.05, 3600, "--reconnect-interval")
    _check_range(ns.hold_timeout, 0, 86400, "--hold-timeout")
    _check_range(ns.target_stall_s, 0, 86400, "--target-stall-s")
    _check_range(ns.capture_ring_mb, 0, MAX_CAPTURE_RING_MB, "--capture-ring-mb")
    _check_range(ns.gather_ms, 0, MAX_GATHER_MS, "--gather-ms")
    if ns.pcap is not None:
        if ns.interface or ns.filter:
            raise OptionsError("--pcap: -i and -F are for live capture; drop them "
                               "(the -x mappings select the packets of the file)")
    elif (ns.accelerate, ns.idle_skip, ns.repeat) != (1.0, 0, 1):
        raise OptionsError("-a, -I and -T are for offline replay; add --pcap FILE")
    _check_range(ns.accelerate, 0.01, 10**6, "-a")
    _check_range(ns.idle_skip, 0, 10**9, "-I")
    _check_range(ns.repeat, 1, 10**6, "-T")
    _check_range(ns.drain_timeout, 0, 86400, "--drain-timeout")
    _check_range(ns.workers, 1, MAX_WORKERS, "--workers")
    if ns.metrics_file and ns.workers > 1 and not ns.stats_file:
        raise OptionsError("--metrics-file with --workers needs --stats-file (the workers' "
                          "counters are merged through it)")
    _check_range(ns.intercept_workers, 1, MAX_WORKERS, "--intercept-workers")
    if ns.workers % ns.intercept_workers:
        raise OptionsError(f"--intercept-workers: {ns.intercept_workers} does not divide "
                           f"--workers {ns.workers}")
    if ns.workers > 1 and ns.pcap is not None:
        raise OptionsError("--workers: offline replay (--pcap) runs in one process")
    if any(p + ns.intercept_workers - 1 > 65535 for _h, p in intercepts):
        raise OptionsError(f"--intercept-workers: intercept ports P..P+{ns.intercept_workers - 1}"
                           " go past 65535")
    fake_ips = parse_fake_ips(split_items(ns.client_ips), [t.target_ip for t in transfers])
    rules = tuple(ns.rules)
    safe_methods = tuple(m.strip().upper() for m in ns.safe_methods.split(",") if m.strip())
    try:
        Selection.from_flags(rules, ns.safe, safe_methods, ns.on_unparsable, ns.non_http)
    except RuleError as exc:
        raise OptionsError(str(exc)) from None
    shaping = spec_of(ns)
    bad = check_spec(shaping)
    if bad is not None:
        raise OptionsError(f"{bad[0]}: {bad[1]}")
    return TcpcopyOptions(
        transfers=transfers, intercepts=intercepts, intercept_port=ns.port,
        connections=ns.connections, fake_ips=fake_ips, replicas=ns.replicas,
        port_shift=ns.port_shift, sample_pct=ns.sample, session_timeout=ns.session_timeout,
        keepalive_timeout=ns.keepalive_timeout, memory_mb=ns.memory_limit, mtu=ns.mtu,
        mss=ns.mss, log_file=ns.log_file, pid_file=ns.pid_file, daemon=ns.daemon,
        only_full=ns.only_full, no_wait=ns.no_wait, lonely=ns.lonely, bpf_filter=ns.filter,
        interfaces=split_items(ns.interface), output_device=ns.output_device,
        key_file=ns.key_file, stats_file=ns.stats_file, metrics_file=ns.metrics_file,
        stats_interval=ns.stats_interval,
        max_sessions=ns.max_sessions, session_buffer_bytes=ns.session_buffer_bytes,
        reconnect_interval=ns.reconnect_interval, hold_timeout=ns.hold_timeout, pcap=ns.pcap,
        target_stall_s=ns.target_stall_s,
        accelerate=ns.accelerate,
        idle_skip_ms=ns.idle_skip, repeat=ns.repeat, drain_timeout=ns.drain_timeout,
        capture_acks=ns.capture_acks, capture_ring_mb=ns.capture_ring_mb, gather_ms=ns.gather_ms,
        select_rules=rules,
        safe=ns.safe,
        safe_methods=safe_methods, on_unparsable=ns.on_unparsable, non_http=ns.non_http,
        netem=shaping, netem_file=ns.netem_file, workers=ns.workers,
        intercept_workers=ns.intercept_workers)


def selection(opts: TcpcopyOptions) -> Optional[Selection]:
    """The options' selection (rules already checked by the parser), None without one."""
    sel = Selection.from_flags(opts.select_rules, opts.safe, opts.safe_methods,
                               opts.on_unparsable, opts.non_http)
    return None if sel.selects_everything else sel
