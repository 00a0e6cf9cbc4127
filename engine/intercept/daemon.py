"""intercept's loop: capture sockets, the tcpcopy connections (``peers``) and timers on
engine.loop.

Computing lives elsewhere (``router.Router``, ``protocol.ServerChannel``); this module only
moves bytes: captured frames -> router -> (``--netem-*``) -> the peers' channels; it also owns
the lifecycle (start-up lines, signals, SIGHUP netem reload, shutdown) and the stats.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from functools import partial
from typing import List, Optional, Tuple

from engine import INTERNAL_VERSION, __version__
from engine.bpf import BpfError, filter_for_expression, residue_filter
from engine.daemon import reload_netem, start_netem, write_pidfile
from engine.intercept.peers import Peers, listen
from engine.loop import Loop, TimerHandle
from engine.netem import Netem
from engine.options.intercept import InterceptOptions
from engine.packets import PacketError
from engine.protocol import ProtocolError, load_key
from engine.pypygc import gc_banner
from engine.rawsock import CaptureSocket, capture_banner, capture_counters, open_captures
from engine.router import HEADER_SNAP, Router, classify_frame
from engine.stats import Logger, stats_document, write_stats

LOG_INTERVAL = 30.0
CAPTURE_BATCH = 256


class SetupError(Exception):
    """Could not start: the message says what failed."""


class InterceptDaemon:
    def __init__(self, opts: InterceptOptions) -> None:
        self.opts = opts
        # a worker of --workers M: its lines tagged in the shared log, which the parent rotates
        tag = f"[w{opts.worker}]" if opts.workers > 1 else ""
        self.log = Logger(opts.log_file, tag=tag, follow=bool(tag))
        try:
            self.key = load_key(opts.key_file) if opts.key_file else None
            # worker j of M sees only the responses to fake ports p with p % M == j; of each
            # frame the kernel keeps the headers only (a record has no payload)
            program = residue_filter(filter_for_expression(opts.filter), opts.workers,
                                     opts.worker)
            self.captures: List[CaptureSocket] = open_captures(
                opts.interfaces or None, program, ignore_outgoing=False,
                ring_bytes=opts.capture_ring_mb << 20, snap=HEADER_SNAP)
            self.listener = listen(opts.bind, opts.port)
        except (ProtocolError, BpfError) as exc:
            raise SetupError(str(exc)) from None
        except OSError as exc:
            raise SetupError(f"{exc.strerror or exc} (bind {opts.bind}:{opts.port}, capture "
                             f"{','.join(opts.interfaces) or 'all'})") from None
        self.router = Router(max_routes=opts.max_routes, max_delayed=opts.max_delayed)
        self.counters = self.router.counters
        self.loop = Loop(gather=opts.gather_ms / 1000.0)
        self.peers = Peers(self.listener, self.key, self.loop, self.router, self.log, self._push)
        self.started_at = time.time()
        self.exit_code = 0
        self._flush_timer: Optional[TimerHandle] = None
        # --netem-*: response frames held, dropped or reordered on their way to tcpcopy
        try:
            self.netem: Optional[Netem[Tuple[int, bytes]]] = start_netem(
                opts.netem_file, opts.netem, self.counters)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        self._netem_timer: Optional[TimerHandle] = None

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        self._write_pidfile()
        self.log.notice(f"intercept version:{__version__}")
        self.log.notice(f"intercept internal version:{INTERNAL_VERSION}")
        self.log.notice(f"filter = {self.opts.filter}")
        if self.netem is not None:
            self.log.notice(f"netem on the response frames: {self.netem.spec.describe()}")
        self.log.notice(f"listen {self.opts.bind}:{self.opts.port}, capture on "
                        f"{','.join(c.ifname or 'all' for c in self.captures)}"
                        f"{', channel auth on' if self.key else ''}")
        for line in capture_banner(self.captures):
            self.log.notice(line)
        gc_line = gc_banner()
        if gc_line:
            self.log.notice(gc_line)
        loop = self.loop
        for cap in self.captures:
            loop.add_reader(cap.sock, partial(self._on_capture, cap))
        self.peers.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        loop.add_signal_handler(signal.SIGHUP, self._reload_netem)
        loop.call_later(1.0, self._tick_expire)
        loop.call_later(self.opts.stats_interval, self._tick_stats)
        loop.call_later(LOG_INTERVAL, self._tick_log)
        self._write_stats("running")
        try:
            loop.run()
        finally:
            self._shutdown()
        return self.exit_code

    def _reload_netem(self) -> None:
        """SIGHUP: read ``--netem-file`` again (``engine.daemon.reload_netem``)."""
        self.netem = reload_netem(self.netem, self.opts.netem_file, self.opts.netem,
                                  self.counters, self.log, "the response frames")

    def _on_signal(self) -> None:
        self.log.notice("intercept is exiting on a signal")
        self.loop.stop()

    def _shutdown(self) -> None:
        self.peers.close_all("exit")
        self._log_stats()
        self._write_stats("exited")
        for cap in self.captures:
            cap.close()
        self.listener.close()
        self.loop.close()
        if self.opts.pid_file:
            with contextlib.suppress(OSError):
                os.unlink(self.opts.pid_file)
        self.log.close()

    def discard(self) -> None:
        """Close this daemon's sockets without running it (``--workers``: the parent and the
        other workers hold copies of every worker's sockets after the fork)."""
        for cap in self.captures:
            cap.close()
        self.listener.close()
        self.loop.close()
        self.log.close()

    def _write_pidfile(self) -> None:
        if self.opts.pid_file:
            write_pidfile(self.opts.pid_file)

    # -- capture -----------------------------------------------------------------------------
    def _on_capture(self, cap: CaptureSocket) -> None:
        now = self.loop.time()
        counters, route = self.counters, self.router.route_response
        for frame in cap.recv_frames(CAPTURE_BATCH):
            counters["captured"] += 1
            try:
                key, flags, record = classify_frame(frame)
            except PacketError:
                counters["malformed"] += 1
                continue
            route(key, flags, record, now)
        # the records of one capture batch are combined; waiting flush_interval for more would
        # add ~2 ms to every copied request's round trip, and tcpcopy paces on responses
        self._push(now, force=True)

    def _push(self, now: float, force: bool = False) -> None:
        netem = self.netem
        for conn, frame in self.router.frames(now, force):
            if netem is not None and netem.offer((conn, frame), len(frame), now) is None:
                continue
            self.peers.send_frame(conn, frame)
        if netem is not None:
            self._arm_netem(now)
        nxt = self.router.next_flush()
        if nxt is not None and self._flush_timer is None:
            self._flush_timer = self.loop.call_at(max(nxt, now), self._on_flush)

    def _arm_netem(self, now: float) -> None:
        assert self.netem is not None
        nxt = self.netem.next_deadline()
        if nxt is not None and self._netem_timer is None:
            self._netem_timer = self.loop.call_at(max(nxt, now), self._on_netem)

    def _on_netem(self) -> None:
        self._netem_timer = None
        assert self.netem is not None
        now = self.loop.time()
        for conn, frame in self.netem.due(now):
            self.peers.send_frame(conn, frame)
        self._arm_netem(now)

    def _on_flush(self) -> None:
        self._flush_timer = None
        self._push(self.loop.time())

    # -- timers ------------------------------------------------------------------------------
    def _tick_expire(self) -> None:
        self.router.expire(self.loop.time())
        self.loop.call_later(1.0, self._tick_expire)

    def _tick_stats(self) -> None:
        self._write_stats("running")
        self.loop.call_later(self.opts.stats_interval, self._tick_stats)

    def _tick_log(self) -> None:
        self._log_stats()
        self.loop.call_later(LOG_INTERVAL, self._tick_log)

    def _log_stats(self) -> None:
        c = self.counters
        resp = c["resp_routed"] + c["resp_delayed"] + c["resp_unrouted"]
        self.log.info(f"total resp packs:{resp}, all:{c['captured']}, "
                      f"route:{c['routes_added']}, sock write cnt:{c['frames_sent']}")
        self.log.info(f"routes:{self.router.route_count}, delayed:{self.router.delayed_count}, "
                      f"unrouted:{c['resp_unrouted']}, kernel drops:{c['kernel_drops']}")

    def _write_stats(self, state: str) -> None:
        self.counters.update(capture_counters(self.captures))
        if not self.opts.stats_file and not self.opts.metrics_file:
            return
        doc = stats_document(
            "intercept", __version__, os.getpid(), self.started_at, time.time(), state,
            self.counters, listen=f"{self.opts.bind}:{self.opts.port}",
            clients=len(self.peers.clients), authenticated_clients=self.peers.authenticated(),
            routes=self.router.route_count, delayed=self.router.delayed_count,
            **({"netem": {**self.netem.spec._asdict(), "held": len(self.netem)}}
               if self.netem is not None else {}))
        try:
            write_stats(self.opts.stats_file, doc, self.opts.metrics_file)
        except OSError as exc:
            self.log.error(f"stats file {self.opts.stats_file or self.opts.metrics_file}",
                           errno=exc.errno)
