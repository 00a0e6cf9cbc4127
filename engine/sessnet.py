"""tcpcopy's side of the intercept channels (I/O: sockets driven by ``engine.loop``).

``Intercepts`` owns ``-C`` TCP connections to every intercept of ``-s``: non-blocking connect,
``engine.protocol.ClientChannel`` for auth/hello/framing, registration spread over the connections
by fake tuple (every intercept learns every route, study §2.2; a route's ``CLIENT_DEL`` follows its
``CLIENT_ADD`` on the same connection), response records handed to a callback, loss detection
(``on_lost``) and (with ``-L``, ``engine.tcpcopy.channel``) reconnection with a short backoff
followed by re-registration of the routes of live sessions (a fix of the C tool, study §2.6).
"""

from __future__ import annotations

import errno
import socket
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from engine.actions import RegisterRoute
from engine.loop import Loop
from engine.protocol import (
    CLIENT_ADD,
    CLIENT_DEL,
    Authenticated,
    ClientChannel,
    Closed,
    Malformed,
    RecordSink,
)
from engine.stats import Logger

CONNECT_TIMEOUT = 3.0
FAIL_LOG_INTERVAL = 30.0      # s: failed reconnects to one intercept are logged once per this
RECV_BUFFER = 262144          # preallocated: recv(262144) would mmap/mremap/munmap per read


class Conn:
    """One TCP connection to one intercept."""

    def __init__(self, owner: Intercepts, server: Server, now: float) -> None:
        self.owner, self.server = owner, server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.channel = ClientChannel(owner.key, now)
        self.out = bytearray()
        self._rbuf = bytearray(RECV_BUFFER)
        self._rview = memoryview(self._rbuf)
        self.connected = False
        self.alive = True
        self.deadline = now + CONNECT_TIMEOUT
        err = self.sock.connect_ex((server.host, server.port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, f"connect to {server.addr}")
        owner.loop.add_writer(self.sock, self._on_connect)

    @property
    def ready(self) -> bool:
        return self.alive and self.connected and self.channel.authenticated

    def _on_connect(self) -> None:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.owner.loop.remove_writer(self.sock)
        if err:
            self.owner.lost(self, f"connect failed ({errno.errorcode.get(err, err)})")
            return
        self.connected = True
        self.owner.loop.add_reader(self.sock, self._on_read)
        self.flush()
        if self.channel.authenticated:
            self.owner.became_ready(self)

    def check_timeout(self, now: float) -> None:
        if not self.alive:
            return
        if not self.connected and now >= self.deadline:
            self.owner.lost(self, "connect timeout")
        elif self.channel.check_timeout(now) is not None:
            self.owner.lost(self, "intercept did not authenticate")

    def _on_read(self) -> None:
        owner = self.owner
        try:
            n = self.sock.recv_into(self._rbuf, RECV_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            owner.lost(self, f"recv error ({exc.strerror})")
            return
        if not n:
            owner.lost(self, "closed by intercept")
            return
        now = owner.loop.time()
        sink = owner.sink
        was_ready = self.channel.authenticated
        for ev in self.channel.feed_raw(self._rview[:n], now, sink):
            if isinstance(ev, Malformed):
                owner.counters["channel_malformed"] += 1
            elif isinstance(ev, Closed):
                owner.lost(self, ev.reason)
                return
            elif isinstance(ev, Authenticated):
                self.server.authenticated = True
        self.flush()
        if not was_ready and self.channel.authenticated:
            owner.became_ready(self)
        owner.after_batch(now)

    def send(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def flush(self) -> None:
        pending = self.channel.take_output()
        if pending:
            self.out += pending
        if not self.out or not self.connected or not self.alive:
            return
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self.owner.lost(self, f"send error ({exc.strerror})")
            return
        del self.out[:n]
        if self.out:
            self.owner.loop.add_writer(self.sock, self.flush)
        else:
            self.owner.loop.remove_writer(self.sock)

    def close(self) -> None:
        if self.alive:
            self.alive = False
            loop = self.owner.loop
            loop.remove_reader(self.sock)
            loop.remove_writer(self.sock)
            self.sock.close()


def conn_for(fake_ip: int, fake_port: int, n: int) -> int:
    """Which of ``n`` ready connections carries a fake tuple's registrations (and so its
    responses): the same one for the same tuple while the ready set is the same."""
    return (fake_ip + fake_port) % n


class Server:
    """One intercept address and its connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.addr = f"{host}:{port}"
        self.conns: List[Conn] = []
        self.authenticated = False
        self.ever_ready = False
        self.quiet_until = 0.0      # failed connects are not logged again before this

    def ready_conns(self) -> List[Conn]:
        return [c for c in self.conns if c.ready]


class Intercepts:
    """All intercept connections of one tcpcopy."""

    def __init__(self, loop: Loop, servers: Iterable[Tuple[str, int]], per_server: int,
                 key: Optional[bytes], sink: RecordSink, counters: Dict[str, int],
                 log: Logger, on_ready: Callable[[Server], None],
                 after_batch: Callable[[float], None],
                 on_lost: Optional[Callable[[Server], None]] = None) -> None:
        self.loop, self.key, self.sink, self.counters, self.log = loop, key, sink, counters, log
        self.servers = [Server(h, p) for h, p in servers]
        self.per_server = per_server
        self.on_ready = on_ready
        self.after_batch = after_batch
        self.on_lost = on_lost

    def connect_all(self) -> None:
        for srv in self.servers:
            self.connect(srv)

    def connect(self, srv: Server) -> None:
        now = self.loop.time()
        srv.conns = [c for c in srv.conns if c.alive]
        while len(srv.conns) < self.per_server:
            try:
                srv.conns.append(Conn(self, srv, now))
            except OSError as exc:
                self.log.error(f"Can not connect to remote server({srv.addr})", exc.errno)
                return

    def became_ready(self, conn: Conn) -> None:
        srv = conn.server
        first = not any(c.ready for c in srv.conns if c is not conn)
        if first:
            srv.quiet_until = 0.0
            if srv.ever_ready:
                self.counters["channel_reconnects"] += 1
            srv.ever_ready = True
            self.log.info(f"connect to remote server({srv.addr})")
            self.on_ready(srv)

    def lost(self, conn: Conn, reason: str) -> None:
        if not conn.alive:
            return
        conn.close()
        srv = conn.server
        now = self.loop.time()
        if conn.connected or now >= srv.quiet_until:
            self.log.error(f"Recv socket({srv.addr}) error: {reason}")
            if not conn.connected:      # retried every few tenths of a second (-L): no flood
                srv.quiet_until = now + FAIL_LOG_INTERVAL
        if self.on_lost is not None:
            self.on_lost(conn.server)

    def check_timeouts(self, now: float) -> None:
        for srv in self.servers:
            for c in list(srv.conns):
                c.check_timeout(now)

    def any_ready(self) -> bool:
        return any(c.ready for srv in self.servers for c in srv.conns)

    def any_pending(self) -> bool:
        return any(c.alive for srv in self.servers for c in srv.conns)

    def register(self, routes: Sequence[RegisterRoute]) -> int:
        """Send a CLIENT_ADD (a ``CLIENT_DEL`` for a route to forget) per route, in order, to
        every intercept that has a ready connection, then flush each connection used once (one
        send for a batch of sessions); returns how many intercepts were reached (the same for
        every route). A route always goes on the same connection (``conn_for``): a session's
        CLIENT_DEL cannot overtake, on another connection, the CLIENT_ADD of the next session
        that reuses its fake tuple."""
        sent = 0
        for srv in self.servers:
            conns = srv.ready_conns()
            if not conns:
                continue
            n = len(conns)
            used: Set[int] = set()
            for fake_ip, fake_port, target_ip, target_port, forget in routes:
                i = conn_for(fake_ip, fake_port, n)
                used.add(i)
                conns[i].channel.register(fake_ip, fake_port, target_ip, target_port,
                                          CLIENT_DEL if forget else CLIENT_ADD)
            for i in sorted(used):
                conns[i].flush()
            sent += 1
        return sent

    def register_on(self, srv: Server, routes: Iterable[Tuple[int, int, int, int]]) -> int:
        conns = srv.ready_conns()
        if not conns:
            return 0
        n = 0
        for fip, fport, tip, tport in routes:
            conns[conn_for(fip, fport, len(conns))].channel.register(fip, fport, tip, tport)
            n += 1
        for c in conns:
            c.flush()
        return n

    def summary(self) -> List[Dict[str, object]]:
        return [{"addr": s.addr, "connections": len(s.ready_conns()),
                 "authenticated": bool(self.key) and s.authenticated} for s in self.servers]

    def close(self) -> None:
        for srv in self.servers:
            for c in srv.conns:
                c.close()
