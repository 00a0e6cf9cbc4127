"""intercept's I/O: capture sockets + listening socket + tcpcopy connections on engine.loop.

Computing lives elsewhere (``router.Router``, ``protocol.ServerChannel``); this module only
moves bytes: captured frames -> router, channel bytes <-> ServerChannel, frames -> clients
(non-blocking writes, bounded per-client output buffers, overflow counted as frames_dropped).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
from functools import partial
from typing import Dict, List, Optional, Tuple

from engine import INTERNAL_VERSION, __version__
from engine.bpf import BpfError, filter_for_expression, residue_filter
from engine.daemon import read_netem, reload_netem, write_pidfile
from engine.loop import Loop, TimerHandle
from engine.netem import Netem
from engine.options.intercept import InterceptOptions
from engine.packets import PacketError, ip_ntoa
from engine.protocol import (
    CLIENT_ADD,
    Authenticated,
    Closed,
    Hello,
    Malformed,
    ProtocolError,
    Registration,
    ServerChannel,
    load_key,
)
from engine.rawsock import CaptureSocket, capture_banner, capture_counters, open_captures
from engine.router import Router, classify_frame
from engine.stats import Logger, stats_document, write_stats

MAX_CLIENT_BUFFER = 8 << 20
LOG_INTERVAL = 30.0
CAPTURE_BATCH = 256


class SetupError(Exception):
    """Could not start: the message says what failed."""


class _Client:
    __slots__ = ("addr", "chan", "out", "sock", "timer")

    def __init__(self, sock: socket.socket, addr: str, chan: ServerChannel) -> None:
        self.sock, self.addr, self.chan = sock, addr, chan
        self.out = bytearray()
        self.timer: Optional[TimerHandle] = None


class InterceptDaemon:
    def __init__(self, opts: InterceptOptions) -> None:
        self.opts = opts
        # a worker of --workers M: its lines tagged in the shared log, which the parent rotates
        tag = f"[w{opts.worker}]" if opts.workers > 1 else ""
        self.log = Logger(opts.log_file, tag=tag, follow=bool(tag))
        try:
            self.key = load_key(opts.key_file) if opts.key_file else None
            # worker j of M sees only the responses to fake ports p with p % M == j
            program = residue_filter(filter_for_expression(opts.filter), opts.workers,
                                     opts.worker)
            self.captures: List[CaptureSocket] = open_captures(
                opts.interfaces or None, program, ignore_outgoing=False,
                ring_bytes=opts.capture_ring_mb << 20)
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((opts.bind, opts.port))
            self.listener.listen(LISTEN_BACKLOG)
            self.listener.setblocking(False)
        except (ProtocolError, BpfError) as exc:
            raise SetupError(str(exc)) from None
        except OSError as exc:
            raise SetupError(f"{exc.strerror or exc} (bind {opts.bind}:{opts.port}, capture "
                             f"{','.join(opts.interfaces) or 'all'})") from None
        self.router = Router(max_routes=opts.max_routes, max_delayed=opts.max_delayed)
        self.counters = self.router.counters
        self.clients: Dict[int, _Client] = {}
        self.loop = Loop(gather=opts.gather_ms / 1000.0)
        self.started_at = time.time()
        self.exit_code = 0
        self._flush_timer: Optional[TimerHandle] = None
        self._peer_log_start, self._peer_log_count, self._peer_log_skipped = 0.0, 0, 0
        for name in ("accept_errors", "clients_refused_busy", "log_lines_skipped"):
            self.counters.setdefault(name, 0)
        # --netem-*: response frames held, dropped or reordered on their way to tcpcopy
        try:
            shaping = read_netem(opts.netem_file, opts.netem)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        self.netem: Optional[Netem[Tuple[int, bytes]]] = (
            Netem(shaping, self.counters, seed=os.getpid()) if shaping.active else None)
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
        loop = self.loop
        for cap in self.captures:
            loop.add_reader(cap.sock, partial(self._on_capture, cap))
        loop.add_reader(self.listener, self._on_accept)
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
        for c in list(self.clients.values()):
            self._close(c, "exit")
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
            client = self.clients.get(conn)
            if client is not None:
                self._send(client, frame, counted=True)
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
            client = self.clients.get(conn)
            if client is not None:
                self._send(client, frame, counted=True)
        self._arm_netem(now)

    def _on_flush(self) -> None:
        self._flush_timer = None
        self._push(self.loop.time())

    # -- channel -----------------------------------------------------------------------------
    def _on_accept(self) -> None:
        while True:
            try:
                sock, (host, port) = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # out of descriptors (EMFILE/ENFILE) or the like: the pending connection stays
                # in the backlog and the listener stays readable, so stop watching it for a
                # while instead of spinning at full CPU
                self.counters["accept_errors"] += 1
                self._peer_log("error", "accept failed", exc.errno)
                self.loop.remove_reader(self.listener)
                self.loop.call_later(ACCEPT_BACKOFF, self._resume_accept)
                return
            sock.setblocking(False)
            if self._pending_auth() >= MAX_PENDING_AUTH:
                # a connect flood: never more than this many peers that have not proved the key
                self.counters["clients_refused_busy"] += 1
                self._peer_log("warn", f"refused {host}:{port}: {MAX_PENDING_AUTH} peers "
                                       "still authenticating")
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(sock, f"{host}:{port}", ServerChannel(self.key, self.loop.time()))
            self.clients[sock.fileno()] = client
            self.counters["clients_accepted"] += 1
            self._peer_log("notice", f"it adds fd:{sock.fileno()} ({client.addr})")
            self.loop.add_reader(sock, partial(self._on_readable, client))
            if client.chan.deadline is not None:
                client.timer = self.loop.call_at(client.chan.deadline,
                                                 partial(self._on_auth_timeout, client))
            self._send(client, client.chan.take_output())

    def _resume_accept(self) -> None:
        self.loop.add_reader(self.listener, self._on_accept)

    def _pending_auth(self) -> int:
        return sum(1 for c in self.clients.values() if not c.chan.authenticated)

    def _peer_log(self, level: str, msg: str, errno: Optional[int] = None) -> None:
        """Lines about peers (connects, rejections, closes), at most PEER_LOG_BURST per
        PEER_LOG_WINDOW s: a flood of hostile peers must not flood the log; the lines left out
        are counted and summed up in the next line that gets through."""
        now = self.loop.time()
        if now - self._peer_log_start >= PEER_LOG_WINDOW:
            if self._peer_log_skipped:
                self.log.warn(f"{self._peer_log_skipped} log lines about peers left out in "
                              f"the last {PEER_LOG_WINDOW:g} s")
            self._peer_log_start, self._peer_log_count, self._peer_log_skipped = now, 0, 0
        if self._peer_log_count >= PEER_LOG_BURST:
            self._peer_log_skipped += 1
            self.counters["log_lines_skipped"] += 1
            return
        self._peer_log_count += 1
        self.log.log(level, msg, errno)

    def _on_auth_timeout(self, client: _Client) -> None:
        client.timer = None
        if client.chan.closed and not client.chan.authenticated:
            self._close(client, "authentication timeout")       # closed by a late read
            return
        closed = client.chan.check_timeout(self.loop.time())
        if closed is not None:
            self._reject(client, closed)

    def _reject(self, client: _Client, closed: Closed) -> None:
        self.counters["clients_rejected_auth"] += 1
        self._peer_log("warn", f"rejected {client.addr}: {closed.reason}")
        self._close(client, closed.reason)

    def _on_readable(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(client, os.strerror(exc.errno or errno.EIO))
            return
        if not data:
            self._close(client, "peer closed")
            return
        now = self.loop.time()
        fd = client.sock.fileno()
        for ev in client.chan.feed(data, now):
            if isinstance(ev, Registration):
                key = (ev.client_ip, ev.client_port, ev.target_ip, ev.target_port)
                if ev.kind == CLIENT_ADD:
                    self.router.add_route(key, fd, now)
                else:
                    self.router.del_route(key)
            elif isinstance(ev, Malformed):
                self.counters["channel_malformed"] += 1
                self.log.warn(f"{ev.reason} from {client.addr}")
            elif isinstance(ev, Hello):
                if ev.version != INTERNAL_VERSION:
                    self.counters["hello_incompatible"] += 1
                    self.log.warn(f"not compatible,client:{ev.version},"
                                  f"intercept:{INTERNAL_VERSION}")
            elif isinstance(ev, Authenticated):
                self.log.notice(f"authenticated {client.addr}")
            elif isinstance(ev, Closed):
                if ev.auth_failed:
                    self._reject(client, ev)
                else:
                    self.counters["channel_malformed"] += 1
                    self._close(client, ev.reason)
                return
        out = client.chan.take_output()
        if out:
            self._send(client, out)
        self._push(now)

    def _send(self, client: _Client, data: bytes, counted: bool = False) -> None:
        if not data or client.sock.fileno() < 0:
            return
        if counted:
            if len(client.out) + len(data) > MAX_CLIENT_BUFFER:
                self.counters["frames_dropped"] += 1
                return
            self.counters["frames_sent"] += 1
            self.counters["records_sent"] += (len(data) - 2) // 64
        if not client.out:
            try:
                n = client.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._close(client, os.strerror(exc.errno or errno.EIO))
                return
            data = data[n:]
            if not data:
                return
            self.loop.add_writer(client.sock, partial(self._on_writable, client))
        client.out += data

    def _on_writable(self, client: _Client) -> None:
        try:
            n = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(client, os.strerror(exc.errno or errno.EIO))
            return
        del client.out[:n]
        if not client.out:
            self.loop.remove_writer(client.sock)

    def _close(self, client: _Client, reason: str) -> None:
        fd = client.sock.fileno()
        if fd < 0:
            return
        self.clients.pop(fd, None)
        self.loop.remove_reader(client.sock)
        self.loop.remove_writer(client.sock)
        if client.timer is not None:
            client.timer.cancel()
        dropped = self.router.drop_connection(fd)
        self.counters["clients_closed"] += 1
        self._peer_log("notice", f"release tunnel resources, fd:{fd} ({client.addr}: {reason}, "
                                 f"{dropped} routes dropped)")
        client.sock.close()

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
            clients=len(self.clients),
            authenticated_clients=sum(1 for c in self.clients.values() if c.chan.ready),
            routes=self.router.route_count, delayed=self.router.delayed_count,
            **({"netem": {**self.netem.spec._asdict(), "held": len(self.netem)}}
               if self.netem is not None else {}))
        try:
            write_stats(self.opts.stats_file, doc, self.opts.metrics_file)
        except OSError as exc:
            self.log.error(f"stats file {self.opts.stats_file or self.opts.metrics_file}",
                           errno=exc.errno)


LISTEN_BACKLOG = 1024       # connections the kernel queues before intercept accepts them
MAX_PENDING_AUTH = 128     # peers connected that have not proved the key yet, at most
ACCEPT_BACKOFF = 0.5       # s without accepting after accept() failed (EMFILE …)
PEER_LOG_BURST = 50        # log lines about peers per PEER_LOG_WINDOW, at most
PEER_LOG_WINDOW = 10.0


def ip_port(ip: int, port: int) -> str:
    return f"{ip_ntoa(ip)}:{port}"
