"""intercept command-line flags: pure parsing and validation (no I/O).

Flags (original, study §1.2, plus long forms and the new options):
  -i/--interface DEV[,DEV]   capture devices (default: every up, non-loopback interface)
  -F/--filter EXPR           response filter, e.g. 'tcp and src port 80' (required)
  -p/--port PORT             channel port (36524)      -b/--bind ADDR  listen address (0.0.0.0)
  -l/--log-file PATH  -P/--pid-file PATH  -d/--daemon  -h/--help  -v/--version
  --key-file PATH  --stats-file PATH  --stats-interval SECONDS (1.0)
  --metrics-file PATH        the counters in the Prometheus text format too (atomically)
  --max-routes N (1000000)  --max-delayed N (65536)
  --capture-ring-mb MB (16)  TPACKET_V2 ring of header-only slots per capture socket
                             (0 = recv(); either way only each frame's headers are kept)
  --gather-ms MS (0)         an idle wake-up waits MS before handling its events (0 = off)
  --netem-delay MS  --netem-jitter MS  --netem-loss PCT  --netem-reorder PCT  --netem-rate KBIT
                             network conditions on the response frames sent to tcpcopy
  --workers M (1)            M worker processes; worker j listens on PORT + j and forwards
                             the responses whose destination port % M == j
Exit codes: 0 clean exit (SIGTERM/SIGINT), 1 runtime failure, 2 usage error (one line naming
the flag). Without -l, log lines go to stderr (to /dev/null when daemonized).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import List, NoReturn, Optional, Sequence

from engine.loop import DEFAULT_GATHER_MS, MAX_GATHER_MS
from engine.netem import NetemSpec, add_flags, check_spec, spec_of
from engine.packets import PacketError, ip_aton
from engine.protocol import DEFAULT_PORT
from engine.rawsock.ring import MAX_CAPTURE_RING_MB
from engine.rawsock.slots import INTERCEPT_RING_MB


class UsageError(ValueError):
    """Bad or contradictory flags; the message names the flag."""


@dataclass(frozen=True)
class InterceptOptions:
    filter: str
    interfaces: List[str] = field(default_factory=list)
    port: int = DEFAULT_PORT
    bind: str = "0.0.0.0"
    log_file: Optional[str] = None
    pid_file: Optional[str] = None
    daemon: bool = False
    key_file: Optional[str] = None
    stats_file: Optional[str] = None
    metrics_file: Optional[str] = None
    stats_interval: float = 1.0
    max_routes: int = 1_000_000
    max_delayed: int = 65536
    #: TPACKET_V2 ring of header-only slots per capture socket, MiB (0 = recv(), one frame's
    #: headers per system call)
    capture_ring_mb: int = INTERCEPT_RING_MB
    #: an idle wake-up pauses this long before handling its events (engine.loop), ms
    gather_ms: float = DEFAULT_GATHER_MS
    #: network conditions applied to the response frames forwarded to tcpcopy
    netem: NetemSpec = field(default_factory=NetemSpec)
    netem_file: Optional[str] = None
    workers: int = 1
    #: set by the parent for one worker process (not a flag): its index
    worker: int = 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog="intercept", add_help=False, allow_abbrev=False)
    p.add_argument("-i", "--interface", action="append", default=[])
    p.add_argument("-F", "--filter")
    p.add_argument("-p", "--port", default=str(DEFAULT_PORT))
    p.add_argument("-b", "--bind", default="0.0.0.0")
    p.add_argument("-l", "--log-file")
    p.add_argument("-P", "--pid-file")
    p.add_argument("-d", "--daemon", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("--key-file")
    p.add_argument("--stats-file")
    p.add_argument("--metrics-file")
    p.add_argument("--stats-interval", default="1.0")
    p.add_argument("--max-routes", default="1000000")
    p.add_argument("--max-delayed", default="65536")
    p.add_argument("--workers", default="1")
    p.add_argument("--capture-ring-mb", default=str(INTERCEPT_RING_MB))
    p.add_argument("--gather-ms", default=str(DEFAULT_GATHER_MS))
    add_flags(p)
    return p


USAGE = __doc__.split("\n\n")[1] if __doc__ else ""


def _int(text: str, flag: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{flag}: not an integer: {text!r}") from None
    if not lo <= value <= hi:
        raise UsageError(f"{flag}: {value} is outside {lo}..{hi}")
    return value


def parse_args(argv: Sequence[str]) -> Optional[InterceptOptions]:
    """Options, or None when -h/-v asked for help/version. Raises UsageError."""
    ns = _parser().parse_args(list(argv))
    if ns.help or ns.version:
        return None
    if not ns.filter or not ns.filter.strip():
        raise UsageError("-F: please set filter (-F param), e.g. -F 'tcp and src port 80'")
    try:
        ip_aton(ns.bind)
    except PacketError:
        raise UsageError(f"-b: not an IPv4 address: {ns.bind!r}") from None
    try:
        interval = float(ns.stats_interval)
    except ValueError:
        raise UsageError(f"--stats-interval: not a number: {ns.stats_interval!r}") from None
    if not 0.05 <= interval <= 3600:
        raise UsageError(f"--stats-interval: {interval} is outside 0.05..3600 seconds")
    try:
        gather = float(ns.gather_ms)
    except ValueError:
        raise UsageError(f"--gather-ms: not a number: {ns.gather_ms!r}") from None
    if not 0 <= gather <= MAX_GATHER_MS:
        raise UsageError(f"--gather-ms: {gather:g} is outside 0..{MAX_GATHER_MS:g} ms")
    ifaces = [i for item in ns.interface for i in item.split(",") if i]
    if "any" in ifaces:
        raise UsageError("-i: 'any' is not supported; list devices or omit -i for all")
    shaping = spec_of(ns)
    bad = check_spec(shaping)
    if bad is not None:
        raise UsageError(f"{bad[0]}: {bad[1]}")
    port = _int(ns.port, "-p", 1, 65535)
    workers = _int(ns.workers, "--workers", 1, 64)
    if port + workers - 1 > 65535:
        raise UsageError(f"--workers: ports {port}..{port + workers - 1} go past 65535")
    if ns.metrics_file and workers > 1 and not ns.stats_file:
        raise UsageError("--metrics-file with --workers needs --stats-file (the workers' "
                         "counters are merged through it)")
    return InterceptOptions(
        filter=ns.filter, interfaces=ifaces, port=port, bind=ns.bind, workers=workers,
        log_file=ns.log_file, pid_file=ns.pid_file, daemon=ns.daemon, key_file=ns.key_file,
        stats_file=ns.stats_file, metrics_file=ns.metrics_file, stats_interval=interval,
        max_routes=_int(ns.max_routes, "--max-routes", 1, 100_000_000),
        max_delayed=_int(ns.max_delayed, "--max-delayed", 0, 10_000_000), netem=shaping,
        capture_ring_mb=_int(ns.capture_ring_mb, "--capture-ring-mb", 0, MAX_CAPTURE_RING_MB),
        gather_ms=gather, netem_file=ns.netem_file)
