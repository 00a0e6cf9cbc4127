"""intercept's tcpcopy connections: the listening socket and one ``Peer`` per connected tcpcopy.

Accepting (a refused flood, a backed-off ``accept()`` failure), the channel's authentication
deadline, channel bytes <-> ``protocol.ServerChannel`` (registrations become routes), frames out
(non-blocking writes, a bounded output buffer per peer, overflow counted as ``frames_dropped``)
and closing (the peer's routes dropped). The lines about peers are rate-limited.
"""

from __future__ import annotations

import errno
import os
import socket
from functools import partial
from typing import Callable, Dict, Optional

from engine import INTERNAL_VERSION
from engine.loop import Loop, TimerHandle
from engine.protocol import (
    CLIENT_ADD,
    Authenticated,
    Closed,
    Hello,
    Malformed,
    Registration,
    ServerChannel,
)
from engine.router import Router
from engine.stats import Logger

MAX_CLIENT_BUFFER = 8 << 20
LISTEN_BACKLOG = 1024       # connections the kernel queues before intercept accepts them
MAX_PENDING_AUTH = 128     # peers connected that have not proved the key yet, at most
ACCEPT_BACKOFF = 0.5       # s without accepting after accept() failed (EMFILE …)
PEER_LOG_BURST = 50        # log lines about peers per PEER_LOG_WINDOW, at most
PEER_LOG_WINDOW = 10.0


def listen(bind: str, port: int) -> socket.socket:
    """The channel's listening socket, non-blocking (``OSError`` when it cannot bind)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, port))
    listener.listen(LISTEN_BACKLOG)
    listener.setblocking(False)
    return listener


class Peer:
    """One connected tcpcopy: its socket, channel state, unsent bytes, auth deadline timer."""

    __slots__ = ("addr", "chan", "out", "sock", "timer")

    def __init__(self, sock: socket.socket, addr: str, chan: ServerChannel) -> None:
        self.sock, self.addr, self.chan = sock, addr, chan
        self.out = bytearray()
        self.timer: Optional[TimerHandle] = None


class Peers:
    """The tcpcopy connections of one intercept, keyed by socket fd (the router's ``conn``).
    ``on_input(now)`` runs after a peer's bytes were handled (the daemon pushes the frames the
    new routes released)."""

    def __init__(self, listener: socket.socket, key: Optional[bytes], loop: Loop,
                 router: Router, log: Logger, on_input: Callable[[float], None]) -> None:
        self.listener, self.key, self.loop, self.router, self.log = listener, key, loop, router, log
        self.counters = router.counters
        self.on_input = on_input
        self.clients: Dict[int, Peer] = {}
        self._log_start, self._log_count, self._log_skipped = 0.0, 0, 0
        for name in ("accept_errors", "clients_refused_busy", "log_lines_skipped"):
            self.counters.setdefault(name, 0)

    def start(self) -> None:
        self.loop.add_reader(self.listener, self._on_accept)

    def close_all(self, reason: str) -> None:
        for c in list(self.clients.values()):
            self.close(c, reason)

    def authenticated(self) -> int:
        return sum(1 for c in self.clients.values() if c.chan.ready)

    def send_frame(self, conn: int, frame: bytes) -> None:
        """A frame of response records for the peer ``conn`` (gone: nothing to do)."""
        client = self.clients.get(conn)
        if client is not None:
            self.send(client, frame, counted=True)

    # -- accepting ---------------------------------------------------------------------------
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
            client = Peer(sock, f"{host}:{port}", ServerChannel(self.key, self.loop.time()))
            self.clients[sock.fileno()] = client
            self.counters["clients_accepted"] += 1
            self._peer_log("notice", f"it adds fd:{sock.fileno()} ({client.addr})")
            self.loop.add_reader(sock, partial(self._on_readable, client))
            if client.chan.deadline is not None:
                client.timer = self.loop.call_at(client.chan.deadline,
                                                 partial(self._on_auth_timeout, client))
            self.send(client, client.chan.take_output())

    def _resume_accept(self) -> None:
        self.loop.add_reader(self.listener, self._on_accept)

    def _pending_auth(self) -> int:
        return sum(1 for c in self.clients.values() if not c.chan.authenticated)

    def _peer_log(self, level: str, msg: str, errno: Optional[int] = None) -> None:
        """Lines about peers (connects, rejections, closes), at most PEER_LOG_BURST per
        PEER_LOG_WINDOW s: a flood of hostile peers must not flood the log; the lines left out
        are counted and summed up in the next line that gets through."""
        now = self.loop.time()
        if now - self._log_start >= PEER_LOG_WINDOW:
            if self._log_skipped:
                self.log.warn(f"{self._log_skipped} log lines about peers left out in "
                              f"the last {PEER_LOG_WINDOW:g} s")
            self._log_start, self._log_count, self._log_skipped = now, 0, 0
        if self._log_count >= PEER_LOG_BURST:
            self._log_skipped += 1
            self.counters["log_lines_skipped"] += 1
            return
        self._log_count += 1
        self.log.log(level, msg, errno)

    def _on_auth_timeout(self, client: Peer) -> None:
        client.timer = None
        if client.chan.closed and not client.chan.authenticated:
            self.close(client, "authentication timeout")       # closed by a late read
            return
        closed = client.chan.check_timeout(self.loop.time())
        if closed is not None:
            self._reject(client, closed)

    def _reject(self, client: Peer, closed: Closed) -> None:
        self.counters["clients_rejected_auth"] += 1
        self._peer_log("warn", f"rejected {client.addr}: {closed.reason}")
        self.close(client, closed.reason)

    # -- channel bytes -----------------------------------------------------------------------
    def _on_readable(self, client: Peer) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(client, os.strerror(exc.errno or errno.EIO))
            return
        if not data:
            self.close(client, "peer closed")
            return
        now = self.loop.time()
        fd = client.sock.fileno()
        for ev in client.chan.feed(data, now):
            if isinstance(ev, Registration):
                key = (ev.client_ip, ev.client_port, ev.target_ip, ev.target_port)
                if ev.kind == CLIENT_ADD:
                    self.router.add_route(key, fd, now)
                else:
                    self.router.del_route(key, fd)
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
                    self.close(client, ev.reason)
                return
        out = client.chan.take_output()
        if out:
            self.send(client, out)
        self.on_input(now)

    def send(self, client: Peer, data: bytes, counted: bool = False) -> None:
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
                self.close(client, os.strerror(exc.errno or errno.EIO))
                return
            data = data[n:]
            if not data:
                return
            self.loop.add_writer(client.sock, partial(self._on_writable, client))
        client.out += data

    def _on_writable(self, client: Peer) -> None:
        try:
            n = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(client, os.strerror(exc.errno or errno.EIO))
            return
        del client.out[:n]
        if not client.out:
            self.loop.remove_writer(client.sock)

    def close(self, client: Peer, reason: str) -> None:
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
