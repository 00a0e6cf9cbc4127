"""The tcpcopy loop: capture -> session table -> senders and intercept channels (one process,
or one worker of ``--workers``). Its parts come from ``engine.tcpcopy.setup``."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Dict, List, Optional

from engine import __version__
from engine.actions import Action, RegisterRoute, SendPacket
from engine.bpf import drop_outgoing
from engine.daemon import reload_netem, start_netem
from engine.loop import INF, Loop, TimerHandle
from engine.netem import Netem
from engine.offline import OfflineError, OfflineFeeder, OfflineSource
from engine.options import TcpcopyOptions
from engine.packets import ETH_P_IP, PacketError, strip_ethernet
from engine.protocol import ProtocolError, load_key
from engine.rawsock import (
    CaptureSocket,
    capture_banner,
    capture_counters,
    open_captures,
)
from engine.session.stall import CHECK_INTERVAL, watching
from engine.session.table import NO_ACTIONS, Actions, Engine
from engine.stats import Logger, stat_lines, stats_document, write_stats
from engine.tcpcopy.channel import Channel
from engine.tcpcopy.setup import (
    Sender,
    StartupError,
    banner_lines,
    capture_program,
    current_rss_kb,
    make_senders,
    session_config,
)
from engine.workers.tcpcopy import join_groups, wait_for_all

LOG_INTERVAL = 30.0
HOUSEKEEPING = 0.5


class Tcpcopy:
    """One running tcpcopy process."""

    def __init__(self, opts: TcpcopyOptions, log: Logger) -> None:
        self.opts, self.log = opts, log
        self.loop = Loop(gather=opts.gather_ms / 1000.0)
        self.loop.set_alarm(self._on_engine_timer)
        self.engine = Engine(session_config(opts), seed=os.getpid())
        if opts.workers > 1:
            self.engine.mapper.set_worker(opts.worker, opts.workers)
        self.counters = self.engine.counters
        self.started_at = time.time()
        self.captures: List[CaptureSocket] = []
        self.senders: Dict[int, Sender] = {}
        self.pending: List[Action] = []     # actions of the current batch (see _after_batch)
        self.stall_timer: Optional[TimerHandle] = None   # None: parked (nothing to watch)
        self.exit_code = 0
        self.offline: Optional[OfflineFeeder] = None
        # --netem-*: copies held, dropped or reordered on their way out (None: sent at once)
        try:
            self.netem: Optional[Netem[SendPacket]] = start_netem(opts.netem_file, opts.netem,
                                                              self.counters)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        key = None
        if opts.key_file:
            try:
                key = load_key(opts.key_file)
            except (ProtocolError, OSError) as exc:
                raise StartupError(f"--key-file: {exc}") from None
        self.channel = Channel(opts, self.loop, self.engine, log, key, self._on_records,
                               self._after_batch, self._collect, self._lost_exit)
        self.intercepts = self.channel.intercepts

    # ------------------------------------------------------------------ start-up

    def _open(self) -> None:
        o = self.opts
        try:
            self.senders = make_senders(o, self.engine.cfg.routes)
            if o.pcap:
                source = OfflineSource(o.pcap, o.accelerate, o.idle_skip_ms / 1000.0, o.repeat)
                self.offline = OfflineFeeder(source, self.loop, self.engine, self._collect,
                                             self._after_batch, self.log, o.drain_timeout)
            else:
                program = capture_program(o)
                if o.workers > 1:
                    # a socket in a fanout group is not covered by PACKET_IGNORE_OUTGOING: the
                    # workers would capture the copies they send; the kernel filter drops them
                    program = drop_outgoing(program)
                self.captures = open_captures(o.interfaces or None, program,
                                              ring_bytes=o.capture_ring_mb << 20)
        except OfflineError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"capture/send socket: {exc}") from None
        if o.workers > 1:
            try:
                join_groups(self.captures, o.fanout_group)
            except OSError as exc:
                raise StartupError(exc.strerror or str(exc)) from None
            if not wait_for_all(self.captures, self.loop.run_once, lambda: self._stopping,
                                self.loop.time) and not self._stopping:
                self.log.warn("not every worker joined its capture groups in time; going on")
        for cap in self.captures:
            self.loop.add_reader(cap.fileno(), self._make_reader(cap))
        for line in capture_banner(self.captures):
            self.log.notice(line)

    def _banner(self) -> None:
        for line in banner_lines(self.opts, self.engine.cfg, self.netem):
            self.log.notice(line)

    def _wait_connected(self) -> None:
        """Connect before capturing (like the C tool); without -L all must succeed."""
        self.intercepts.connect_all()
        deadline = self.loop.time() + 4.0
        while self.loop.time() < deadline and not self._stopping:
            servers = self.intercepts.servers
            if all(s.ready_conns() for s in servers):
                return
            if not self.intercepts.any_pending():
                break
            self.loop.run_once(0.05)
            self.intercepts.check_timeouts(self.loop.time())
        if not self.opts.lonely and not all(s.ready_conns() for s in self.intercepts.servers):
            bad = [s.addr for s in self.intercepts.servers if not s.ready_conns()]
            raise StartupError("Can not connect to remote server(" + ",".join(bad) + ")")

    # ------------------------------------------------------------------ events

    def _make_reader(self, cap: CaptureSocket):  # type: ignore[no-untyped-def]
        engine = self.engine
        on_packet = engine.on_client_packet
        loop = self.loop

        def read() -> None:
            frames = cap.recv_frames(256)
            if not frames:
                return
            now = loop.time()
            for f in frames:
                if f[12] == 8 and f[13] == 0:
                    acts = on_packet(f[14:], now)
                else:
                    acts = self._odd_frame(f, now)
                if acts:
                    self.pending += acts
            self._after_batch(now)
        return read

    def _odd_frame(self, frame: bytes, now: float) -> Actions:
        try:
            etype, off = strip_ethernet(frame)
        except PacketError:
            self.counters["captured"] += 1
            self.counters["malformed"] += 1
            return NO_ACTIONS
        if etype != ETH_P_IP:
            self.counters["captured"] += 1
            self.counters["filtered"] += 1
            return NO_ACTIONS
        return self.engine.on_client_packet(frame[off:], now)

    def _collect(self, acts: Actions, _now: float) -> None:
        """Keep a batch's actions for ``_after_batch``."""
        self.pending += acts

    def _on_records(self, recs: List[bytes], now: float) -> None:
        acts = self.engine.on_response_records(recs, now)
        if acts:
            self.pending += acts

    def _after_batch(self, now: float) -> None:
        """After a batch of events: carry out their actions (in order), then the engine's
        end-of-batch ones, then re-arm the engine's timer."""
        engine = self.engine
        batch = self.pending
        if batch:
            self.pending = []
            self._dispatch(batch, now)
        acts = engine.flush(now)
        if acts:
            self._dispatch(acts, now)
        when = engine.next_deadline()
        self.loop.alarm_at = INF if when is None else when
        if self.stall_timer is None and engine.asked_at != INF and self.opts.target_stall_s > 0:
            self.stall_timer = self.loop.call_later(CHECK_INTERVAL, self._check_stall)
        if self.netem is not None:
            held = self.netem.next_deadline()
            if held is not None and held < self.loop.alarm_at:
                self.loop.alarm_at = held

    def _on_engine_timer(self) -> None:
        now = self.loop.time()
        if self.netem is not None:
            for act in self.netem.due(now):
                self._send(act, now)
        self._dispatch(self.engine.on_timer(now), now)
        self._after_batch(now)

    def _dispatch(self, actions: Actions, now: float) -> None:
        """Carry out the engine's actions, in order."""
        senders = self.senders
        routes = self.engine.cfg.routes
        netem = self.netem
        # Every new session of the batch is registered with intercept first (and every session
        # gone for good forgotten), in one send per channel connection (a session's
        # registration still precedes its SYN).
        regs = [act for act in actions if isinstance(act, RegisterRoute)]
        if regs and not self.intercepts.register(regs):
            new = sum(1 for act in regs if not act.forget)   # a lost CLIENT_DEL loses nothing
            if new and self.channel.holding:
                self.channel.all_lost(now)       # held: registered again once one is back
            elif new:
                self.counters["sessions_no_intercept"] += new
        for act in actions:
            if isinstance(act, SendPacket):
                if netem is not None:
                    if netem.offer(act, len(act.packet), now) is not None:
                        self._send(act, now)
                    continue
                fkey, route, packet = act         # unpacking: no per-field descriptor calls
                err = senders[route].send(packet, routes[route].target_ip)
                if err:
                    more = self.engine.on_send_error(fkey, now)
                    self._send_error_log(err)
                    self._dispatch(more, now)

    def _reload_netem(self) -> None:
        """SIGHUP: read ``--netem-file`` again (``engine.daemon.reload_netem``)."""
        self.netem = reload_netem(self.netem, self.opts.netem_file, self.opts.netem,
                                  self.counters, self.log, "the copies")
        self._after_batch(self.loop.time())

    def _send(self, act: SendPacket, now: float) -> None:
        """One copy out (after ``--netem-*`` held it)."""
        fkey, route, packet = act
        err = self.senders[route].send(packet, self.engine.cfg.routes[route].target_ip)
        if err:
            more = self.engine.on_send_error(fkey, now)
            self._send_error_log(err)
            self._dispatch(more, now)

    def _send_error_log(self, err: int) -> None:
        n = self.counters["send_errors"]
        if n & (n - 1) == 0:          # 1, 2, 4, 8, ...: visible but never a flood
            self.log.error(f"send to target error (count {n})", err)

    def _lost_exit(self) -> None:
        """Every intercept is lost and -L was not given."""
        self.exit_code = 1
        self.loop.stop()

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        now = self.loop.time()
        self.intercepts.check_timeouts(now)
        self.counters.update(capture_counters(self.captures))
        self.channel.housekeeping(now)
        if self.exit_code:
            return
        self._check_memory(now)
        self.loop.call_later(HOUSEKEEPING, self._housekeeping)

    def _check_stall(self) -> None:
        """The target stopped answering, or answers again (``engine.session.stall``): every
        ``CHECK_INTERVAL`` (O(1) but while stalled) while there is something to watch; parked
        otherwise, until ``_after_batch`` sees the next request go out."""
        now = self.loop.time()
        event, acts = self.engine.check_stall(now)
        self.stall_timer = (self.loop.call_later(CHECK_INTERVAL, self._check_stall)
                            if watching(self.engine) else None)
        if acts:
            self._dispatch(acts, now)
            self._after_batch(now)
        if event is None:
            return
        stall = self.opts.target_stall_s
        if event.ended:
            self.log.notice(f"target answers again after {event.seconds:.1f} s of silence; "
                            f"{event.refused} new sessions not started, {event.shed} shed")
        else:
            self.log.warn(f"target silent for {stall:g} s; not starting new sessions "
                          f"({event.shed} sessions holding client bytes for it shed)")

    def _check_memory(self, now: float) -> None:
        # the capture rings' pages are resident once touched, but they are not ours to shed
        rings = sum(cap.ring_resident_bytes() for cap in self.captures)
        shed = self.engine.check_memory(current_rss_kb() * 1024 - rings, now)
        if shed.sessions:
            self.log.warn(f"occupies too much memory, limit:{self.opts.memory_mb * 1024}")
            self._dispatch(shed.actions, now)
            self._after_batch(now)

    def _write_stats(self, state: str = "running") -> None:
        if not self.opts.stats_file and not self.opts.metrics_file:
            return
        report = self.engine.selection_report()     # also refreshes its counters
        doc = stats_document("tcpcopy", __version__, os.getpid(), self.started_at, time.time(),
                             state, self.counters, intercepts=self.intercepts.summary(),
                             sessions_active=self.engine.sessions_active,
                             buffered_bytes=self.engine.buffered_total,
                             target_stalled_since=self._stalled_since(),
                             target_response_ms=self.engine.latency.summary(),
                             copy_delay_ms=self.engine.copy_delay.summary(last=True),
                             **({"netem": {**self.netem.spec._asdict(), "held": len(self.netem)}}
                                if self.netem is not None else {}),
                             **({"select": report} if report is not None else {}),
                             **({"offline": self.offline.summary()} if self.offline else {}))
        try:
            write_stats(self.opts.stats_file, doc, self.opts.metrics_file)
        except OSError as exc:
            self.log.error(f"stats file {self.opts.stats_file or self.opts.metrics_file}",
                           exc.errno)

    def _stalled_since(self) -> Optional[float]:
        """When the current target stall began (epoch seconds), None when not stalled."""
        since = self.engine.stalled_since
        if since == INF:
            return None
        return round(time.time() - (self.loop.time() - since), 3)

    def _stats_tick(self) -> None:
        self._write_stats()
        self.loop.call_later(self.opts.stats_interval, self._stats_tick)

    def _log_tick(self) -> None:
        self._log_stats()
        self.loop.call_later(LOG_INTERVAL, self._log_tick)

    def _log_stats(self) -> None:
        if self.counters["captured"]:
            for line in stat_lines(self.counters, self.engine.sessions_active):
                self.log.info(line)
            if self.engine.selection_report() is not None:
                c = self.counters
                self.log.info(f"select: requests selected:{c['requests_selected']}, "
                              f"skipped:{c['requests_skipped']}, "
                              f"unparsable streams:{c['streams_unparsable']}, "
                              f"non-http streams:{c['streams_non_http']}, "
                              f"sessions never opened:{c['sessions_unselected']}")

    # ------------------------------------------------------------------ run

    _stopping = False

    def _stop(self) -> None:
        self._stopping = True
        self.loop.stop()

    def run(self) -> int:
        self.loop.add_signal_handler(signal.SIGTERM, self._stop)
        self.loop.add_signal_handler(signal.SIGINT, self._stop)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_netem)
        self._banner()
        try:
            self._wait_connected()
            if self._stopping:
                return 0
            self._open()
            if self._stopping:
                return 0
            self.log.notice("send the first packets here")
            if self.offline is not None:
                self.offline.begin()
            self.loop.call_later(HOUSEKEEPING, self._housekeeping)
            if self.opts.target_stall_s > 0:
                self.stall_timer = self.loop.call_later(CHECK_INTERVAL, self._check_stall)
            self.loop.call_later(LOG_INTERVAL, self._log_tick)
            self._stats_tick()
            self.channel.running = True
            self.loop.run()
        finally:
            self._shutdown()
        return self.exit_code

    def _shutdown(self) -> None:
        now = self.loop.time()
        with contextlib.suppress(Exception):
            self._dispatch(self.engine.shutdown(now), now)
        if self.exit_code == 0:
            self.log.notice("sig 15 received" if self._stopping else "tcpcopy exits")
        self._log_stats()
        self._write_stats("exited")
        for cap in self.captures:
            cap.close()
        for sender in set(self.senders.values()):
            sender.close()
        self.intercepts.close()
        self.loop.close()
