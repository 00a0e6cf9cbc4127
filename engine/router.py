"""intercept's routing core, sans-I/O: which tcpcopy connection gets which response record.

- Routes are keyed by the FULL tuple ``(client_ip, client_port, target_ip, target_port)``
  (collision-free, unlike the C tool's 32-bit key). Our tcpcopy forgets a session's route
  (``CLIENT_DEL``) when the session is gone, so the table holds the live sessions; the C
  tcpcopy never does, so the table is bounded: when full, the oldest
  route of the connection holding the most routes is evicted (counted as ``route_evictions``),
  so one peer flooding registrations evicts its own routes, not another tcpcopy's live ones.
  A response's key is (its dst ip, dst port, src ip, src port).
- Delay table: a SYN-ACK or RST seen before its registration is parked up to ``delay_ttl`` s
  (bounded, oldest evicted) and flushed when the registration arrives.
- Combining: per connection, records are batched into frames of <= 16; a full batch is ready at
  once, a partial one after ``flush_interval`` s (2 ms). ``frames(now)`` hands them out.
- Time is an input everywhere. Connection ids are opaque ints chosen by the I/O loop.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from engine.header import fields
from engine.packets import ETH_P_IP, RST, SYN, PacketError, strip_ethernet
from engine.protocol import COMB_MAX, encode_frame, make_record

Key = Tuple[int, int, int, int]

COUNTERS = ("captured", "kernel_drops", "malformed", "resp_routed", "resp_delayed",
            "resp_unrouted", "routes_added", "routes_deleted", "route_evictions",
            "delay_flushed", "delay_expired", "delay_evictions", "frames_sent", "records_sent",
            "frames_dropped", "clients_accepted", "clients_closed", "clients_rejected_auth",
            "channel_malformed", "hello_incompatible")


#: what intercept keeps of each captured frame (the kernel filter's snap length): Ethernet
#: (14), two 802.1Q tags (8), the IP header with options (60) and the TCP header with options
#: (60), rounded up; a record needs no payload (the C intercept keeps 14 + 120 bytes)
HEADER_SNAP = 160


def classify_frame(frame: bytes) -> Tuple[Key, int, bytes]:
    """(route key, TCP flags, 64-byte record) of a captured Ethernet frame, whole or cut after
    its headers (intercept captures only those). Raises PacketError (the rules of
    ``engine.header.view``, or a frame that is not IPv4)."""
    etype, off = strip_ethernet(frame)
    if etype != ETH_P_IP:
        raise PacketError("ethertype", f"ethertype 0x{etype:04x} is not IPv4")
    f = fields(frame, off, True)    # HeaderView order: src 8, dst 9, sport 10, dport 11, flags 15
    return (f[9], f[11], f[8], f[10]), f[15], make_record(frame, off)


class Router:
    """Route table + delay table + per-connection combining. No sockets, no clock."""

    def __init__(self, max_routes: int = 1_000_000, delay_ttl: float = 30.0,
                 max_delayed: int = 65536, flush_interval: float = 0.002,
                 comb_max: int = COMB_MAX) -> None:
        self.max_routes, self.delay_ttl, self.max_delayed = max_routes, delay_ttl, max_delayed
        self.flush_interval, self.comb_max = flush_interval, comb_max
        self.counters: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._routes: OrderedDict[Key, int] = OrderedDict()
        self._by_conn: Dict[int, OrderedDict[Key, None]] = {}   # per connection, oldest first
        self._delayed: OrderedDict[Key, List[Tuple[float, bytes]]] = OrderedDict()
        self._delayed_count = 0
        self._pending: Dict[int, List[bytes]] = {}
        self._since: Dict[int, float] = {}
        self._ready: List[Tuple[int, bytes]] = []

    # -- routes ------------------------------------------------------------------------------
    @property
    def route_count(self) -> int:
        return len(self._routes)

    def lookup(self, key: Key) -> Optional[int]:
        return self._routes.get(key)

    def add_route(self, key: Key, conn: int, now: float) -> None:
        old = self._routes.get(key)
        if old is not None and old != conn:
            self._forget(old, key)
        self._routes[key] = conn
        self._routes.move_to_end(key)
        mine = self._by_conn.setdefault(conn, OrderedDict())
        mine[key] = None
        mine.move_to_end(key)
        self.counters["routes_added"] += 1
        while len(self._routes) > self.max_routes:
            self._evict()
        parked = self._delayed.pop(key, None)
        if parked:
            self._delayed_count -= len(parked)
            for ts, rec in parked:
                if now - ts <= self.delay_ttl:
                    self.counters["delay_flushed"] += 1
                    self._append(conn, rec, now)
                else:
                    self.counters["delay_expired"] += 1

    def _forget(self, conn: int, key: Key) -> None:
        mine = self._by_conn.get(conn)
        if mine is not None:
            mine.pop(key, None)

    def _evict(self) -> None:
        """Drop the oldest route of the connection that holds the most routes."""
        victim = max(self._by_conn.values(), key=len)
        gone, _ = victim.popitem(last=False)
        del self._routes[gone]
        self.counters["route_evictions"] += 1

    def del_route(self, key: Key, conn: Optional[int] = None) -> None:
        """Forget a route (a CLIENT_DEL). With ``conn``, only if that connection holds it: a
        route registered again since, by another connection, stays."""
        owner = self._routes.get(key)
        if owner is None or (conn is not None and owner != conn):
            return
        del self._routes[key]
        self._forget(owner, key)
        self.counters["routes_deleted"] += 1

    def drop_connection(self, conn: int) -> int:
        """Forget a closed tcpcopy connection: its routes and unsent records. Returns #routes."""
        keys = self._by_conn.pop(conn, OrderedDict())
        for key in keys:
            if self._routes.get(key) == conn:
                del self._routes[key]
        self._pending.pop(conn, None)
        self._since.pop(conn, None)
        self._ready = [(c, f) for c, f in self._ready if c != conn]
        return len(keys)

    # -- responses ---------------------------------------------------------------------------
    def route_response(self, key: Key, flags: int, record: bytes, now: float) -> None:
        conn = self._routes.get(key)
        if conn is not None:
            self.counters["resp_routed"] += 1
            self._append(conn, record, now)
        elif flags & (SYN | RST):
            self._park(key, record, now)
        else:
            self.counters["resp_unrouted"] += 1

    def _park(self, key: Key, record: bytes, now: float) -> None:
        self.counters["resp_delayed"] += 1
        self._delayed.setdefault(key, []).append((now, record))
        self._delayed_count += 1
        while self._delayed_count > self.max_delayed:
            _k, items = self._delayed.popitem(last=False)
            self._delayed_count -= len(items)
            self.counters["delay_evictions"] += len(items)

    def expire(self, now: float) -> int:
        """Drop parked responses older than delay_ttl (oldest keys first). Returns how many."""
        dropped = 0
        while self._delayed:
            key, items = next(iter(self._delayed.items()))
            if now - items[-1][0] <= self.delay_ttl:
                break
            del self._delayed[key]
            self._delayed_count -= len(items)
            dropped += len(items)
        self.counters["delay_expired"] += dropped
        return dropped

    @property
    def delayed_count(self) -> int:
        return self._delayed_count

    # -- combining ---------------------------------------------------------------------------
    def _append(self, conn: int, record: bytes, now: float) -> None:
        batch = self._pending.get(conn)
        if batch is None:
            batch = self._pending[conn] = []
            self._since[conn] = now
        batch.append(record)
        if len(batch) >= self.comb_max:
            self._ready.append((conn, encode_frame(batch)))
            del self._pending[conn]
            del self._since[conn]

    def next_flush(self) -> Optional[float]:
        """When the oldest partial batch is due (None: nothing pending)."""
        if self._ready:
            return 0.0
        return min(self._since.values()) + self.flush_interval if self._since else None

    def frames(self, now: float, force: bool = False) -> List[Tuple[int, bytes]]:
        """Frames to send now: full batches, and partial ones that waited flush_interval."""
        out, self._ready = self._ready, []
        due = [c for c, t in self._since.items() if force or now - t >= self.flush_interval]
        for conn in due:
            out.append((conn, encode_frame(self._pending.pop(conn))))
            del self._since[conn]
        return out
