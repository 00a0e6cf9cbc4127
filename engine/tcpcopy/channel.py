"""tcpcopy's side of an intercept outage: what the loss and the return of the intercept
connections do to the copy (I/O glue between ``engine.sessnet`` and the session table).

The last connection lost: without ``-L`` tcpcopy exits (1); with ``-L`` the table holds its
sessions (``engine.session.hold``, up to ``--hold-timeout`` s) and a reconnection is tried
``RECONNECT_FIRST`` s later, the delay doubling on each failure up to
``--reconnect-interval``. An intercept ready again first learns every live route, then the held
sessions resume (their SYNs and unacknowledged data go out again).
"""

from __future__ import annotations

from typing import Callable, Optional

from engine.loop import Loop, TimerHandle
from engine.options import TcpcopyOptions
from engine.protocol import RecordSink
from engine.session.table import Actions, Engine
from engine.sessnet import Intercepts, Server
from engine.stats import Logger

RECONNECT_FIRST = 0.1     # s: first retry after a loss (-L); doubled on each failure up to
#                           --reconnect-interval, back to this once a connection is ready


class Channel:
    """Keeps the copy going across intercept losses (one per tcpcopy process)."""

    def __init__(self, opts: TcpcopyOptions, loop: Loop, engine: Engine, log: Logger,
                 key: Optional[bytes], on_record: RecordSink,
                 after_batch: Callable[[float], None],
                 collect: Callable[[Actions, float], None], stop: Callable[[], None]) -> None:
        self.opts, self.loop, self.engine, self.log = opts, loop, engine, log
        self.collect = collect          # actions for the daemon's current batch
        self.after_batch = after_batch  # carries them out
        self.stop = stop                # ends tcpcopy with exit code 1
        self.intercepts = Intercepts(loop, opts.intercepts, opts.connections, key, on_record,
                                     engine.counters, log, self.ready, after_batch, self.lost)
        self.delay = RECONNECT_FIRST
        self.timer: Optional[TimerHandle] = None
        self.running = False            # set once the main loop runs

    @property
    def holding(self) -> bool:
        return self.opts.lonely and self.engine.cfg.hold_timeout > 0

    def ready(self, srv: Server) -> None:
        """A server's first connection is ready: it learns every live route, then the held
        sessions resume."""
        self.delay = RECONNECT_FIRST
        n = self.intercepts.register_on(srv, self.engine.live_routes())
        if n:
            self.log.notice(f"re-registered {n} live routes on {srv.addr}")
        now = self.loop.time()
        resumed, acts = self.engine.channel_up(now)
        if resumed:
            self.log.notice(f"resumed {resumed} sessions held while no intercept was "
                            "connected")
        if acts:
            self.collect(acts, now)
            self.after_batch(now)

    def lost(self, _srv: Server) -> None:
        """A connection was lost (or failed to connect)."""
        if not self.running:
            return                      # start-up: _wait_connected decides
        if not self.intercepts.any_ready():
            self.all_lost(self.loop.time())
        if self.opts.lonely:
            self.schedule()

    def all_lost(self, now: float) -> None:
        """No intercept connection is ready (seen on a loss, a failed registration or the
        housekeeping check)."""
        if not self.engine.intercepts_up:
            return
        if not self.opts.lonely:
            self.engine.intercepts_up = False
            self.log.error("all intercept connections are lost, tcpcopy exits")
            self.stop()
            return
        held = self.engine.channel_down(now)
        if self.holding:
            self.log.warn(f"all intercept connections are lost; holding {held} live sessions "
                          f"and the new ones (up to {self.engine.cfg.hold_timeout:g} s) until "
                          "one is back (-L)")
        else:
            self.log.warn("all intercept connections are lost; copying paused (-L)")

    def housekeeping(self, now: float) -> None:
        ic = self.intercepts
        if not ic.any_ready():
            self.all_lost(now)
        if self.opts.lonely and any(len([c for c in srv.conns if c.alive]) < ic.per_server
                                    for srv in ic.servers):
            self.schedule()

    def schedule(self) -> None:
        """A reconnection soon (unless one is planned): now + the current backoff."""
        if self.timer is None:
            delay = self.delay
            self.delay = min(delay * 2, self.opts.reconnect_interval)
            self.timer = self.loop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        self.timer = None
        ic = self.intercepts
        for srv in ic.servers:
            if len([c for c in srv.conns if c.alive]) < ic.per_server:
                ic.connect(srv)


__all__ = ["RECONNECT_FIRST", "Channel"]
