"""The session table: the sans-I/O core of tcpcopy (events in, actions out, time as input).

Events: ``on_client_packet(ip_bytes, now)`` (a captured client->online packet),
``on_response_records(records, now)`` (the 64-byte response records of one read from
intercept; ``on_response_record`` takes one),
``on_timer(now)`` when ``next_deadline()`` has passed, ``flush(now)`` after a batch of events
(sends the ACKs still owed to the target), ``on_send_error(fkey, now)``; ``channel_down/up``.
Every event method RETURNS the actions it caused, in order: typed values of
``engine.actions`` (``SendPacket``, ``RegisterRoute``, ``Drop`` with ``record_drops``). Timers
are the engine's own (one heap for all sessions): after a batch the daemon asks
``next_deadline()`` and calls ``on_timer(now)`` once it has passed. Every loss increments a
counter in ``counters`` (names: ``engine.session.config.COUNTERS``).
"""

from __future__ import annotations

import heapq
import random
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from engine.actions import Action, Drop, RegisterRoute, SendPacket
from engine.header import PacketError, fields
from engine.latency import Histogram
from engine.packets import ACK, FIN, RST, SYN
from engine.session import (
    CLOSED,
    INF,
    M32,
    Session,
    after,
    due,
    finish,
    on_data,
    on_timer,
    send_ack,
)
from engine.session.admit import client_syn, create, resync_copies, revive
from engine.session.config import (
    COUNTERS,
    SELECT_COUNTERS,
    AddressMapper,
    Route,
    SessionConfig,
)
from engine.session.hold import pause, resume
from engine.session.intake import feed_selected
from engine.session.packets import find_ts
from engine.session.responses import on_records
from engine.session.shed import Shed, over_buffer, over_rss, send_refused
from engine.session.stall import StallEvent, asked, check, reset

_new = tuple.__new__
Actions = Sequence[Action]           # what an event returns: a list, or NO_ACTIONS
NO_ACTIONS: Tuple[()] = ()
CAPTURE_DROPS = {"protocol": "filtered", "fragment": "frag"}   # other PacketErrors: malformed
#: Superseded timer entries tolerated beyond two per session before `compact_timers` runs.
HEAP_SLACK = 1024


class Engine:
    """All sessions of one tcpcopy process."""

    def __init__(self, cfg: SessionConfig, seed: int = 0) -> None:
        self.cfg = cfg
        rnd = random.Random(seed)
        self.counters: Dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.selection = cfg.selection
        if self.selection is not None:
            self.counters.update(dict.fromkeys(SELECT_COUNTERS, 0))
        self.mapper = AddressMapper(cfg.fake_ips, cfg.port_shift, rnd.randrange(512))
        # online ip:port -> its -x items: several for one port copy each session to each
        # target (compare two versions under the same traffic)
        self.routes: Dict[int, Tuple[Route, ...]] = {}
        for i, r in enumerate(cfg.routes):
            r.index = i
            key = (r.online_ip << 16) | r.online_port
            self.routes[key] = (*self.routes.get(key, ()), r)
        self.wildcard = any(r.online_ip == 0 for r in cfg.routes)
        self.by_client: Dict[int, List[Session]] = {}
        self.by_fake: Dict[int, Session] = {}
        self.live = 0
        self.out: List[Action] = []       # the current event's actions (see _take)
        self.heap: List[Tuple[float, int, Session]] = []
        self._tseq = 0
        self._ident = rnd.randrange(65536)
        self.ack_set: Set[Session] = set()
        self.buffered_total = 0
        self.seg_max = max(64, cfg.mtu - 52)
        self.full_sizes = {576, 1492, 1500, cfg.mtu}
        self.intercepts_up = True
        self.down_since = INF             # when the channel went down while holding
        self.mem_settle_at = 0.0
        self.rss_over = False             # the last RSS check found the process over -m
        self.mem_anchor = -1              # the estimate when RSS was first shed for (-1: none)
        # a target that stopped answering (engine.session.stall)
        self.asked_at = INF
        self.asks = 0
        self.asked_mem = 0
        self.answered_at = -INF
        self.heard_at = -INF
        self.stalled_since = INF
        self.stall_seen = INF
        self.probe_at = INF
        self.stall_base: Dict[str, int] = {}
        self.stall_ended: Optional[StallEvent] = None
        self.stall_refused: Set[int] = set()
        # the target's response time per copied request, as the copier sees it: request sent
        # (by the emulator; --netem-delay holds it after that) to the first response byte
        self.latency = Histogram()
        # how long each copied request waited in tcpcopy, from its capture to its sending:
        # pacing behind the target's answers, and any backlog (a copy that falls behind)
        self.copy_delay = Histogram()

    # ------------------------------------------------------------------ services for sessions

    def emit(self, sess: Session, packet: bytes) -> None:
        self.counters["sent"] += 1
        # SendPacket(...) without the Python-level NamedTuple __new__: this is per packet
        self.out.append(_new(SendPacket, (sess.fkey, sess.route.index, packet)))

    def register(self, sess: Session) -> None:
        r = sess.route
        self.out.append(RegisterRoute(sess.fake_ip, sess.fake_port, r.target_ip, r.target_port))

    def note_latency(self, seconds: float) -> None:
        self.latency.add(seconds)

    def note_delay(self, seconds: float) -> None:
        self.copy_delay.add(seconds)

    def asked(self, now: float) -> None:
        asked(self, now)

    def next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

    def arm(self, sess: Session, when: float) -> None:
        if when < sess.timer_at:
            sess.timer_at = when
            self._tseq += 1
            heapq.heappush(self.heap, (when, self._tseq, sess))
            if len(self.heap) > 2 * len(self.by_fake) + HEAP_SLACK:
                # superseded entries keep closed sessions in memory until their own time
                # (up to the idle timeout): drop them, in place (the timer loops hold it)
                self.heap[:] = [e for e in self.heap if e[0] == e[2].timer_at]
                heapq.heapify(self.heap)

    def need_ack(self, sess: Session) -> None:
        self.ack_set.add(sess)

    def read_ts(self, options: bytes) -> Optional[int]:
        ts = find_ts(options)
        return ts[0] if ts is not None else None

    def drop(self, reason: str) -> None:
        self.counters[reason] += 1
        if self.cfg.record_drops:
            self.out.append(Drop(reason))

    def check_buffer(self, sess: Session, now: float) -> None:
        """Shed a session whose buffer or the process-wide estimate is over its cap
        (``engine.session.shed``)."""
        over_buffer(self, sess, now)

    def drop_buffers(self, sess: Session) -> None:
        self.buffered_total -= sess.buffered
        sess.buffered = 0
        sess.buf.clear()
        sess.unacked.clear()
        sess.ooo.clear()
        self.live -= 1

    def destroy(self, sess: Session) -> None:
        """Forget a session for good (after its linger)."""
        if sess.state != CLOSED:
            sess.state = CLOSED
            self.drop_buffers(sess)
        sess.timer_at = -1.0
        if self.by_fake.get(sess.fkey) is sess:
            del self.by_fake[sess.fkey]
            self.mapper.release(sess.fkey)
            r = sess.route       # intercept can forget its route (before a reuse registers it)
            self.out.append(RegisterRoute(sess.fake_ip, sess.fake_port, r.target_ip,
                                          r.target_port, True))
        lst = self.by_client.get(sess.ckey)
        if lst is not None and sess in lst:
            lst.remove(sess)
            if not lst:
                del self.by_client[sess.ckey]
        self.counters["sessions_released"] += 1

    # ------------------------------------------------------------------ events

    def _take(self) -> Actions:
        """The actions collected since the last event (handed over, not shared)."""
        out = self.out
        if out:
            self.out = []
            return out
        return NO_ACTIONS

    def on_client_packet(self, data: bytes, now: float) -> Actions:
        """A captured IPv4 packet (no link header). Never raises on bad input."""
        c = self.counters
        c["captured"] += 1
        try:
            (vihl, _tos, tot, _id, frag, _ttl, _proto, _ipsum, saddr, daddr, sport, dport, seq,
             ack, doffb, flags, win, _tsum, _urg) = fields(data)
        except PacketError as exc:
            self.drop(CAPTURE_DROPS.get(exc.reason, "malformed"))
            return self._take()
        if frag & 0x3FFF:
            self.drop("frag")             # a first fragment: its payload is cut short
            return self._take()
        ihl = (vihl & 15) << 2
        doff = (doffb >> 4) << 2
        route = self.routes.get((daddr << 16) | dport)
        if route is None and self.wildcard:
            route = self.routes.get(dport)
        if route is None:
            self.drop("filtered")
            return self._take()
        c["clt_packs"] += 1
        start = ihl + doff
        payload = data[start:tot] if tot > start else b""
        ckey = (((saddr << 16) | sport) << 48) | (daddr << 16) | dport
        sessions = self.by_client.get(ckey)
        if flags & SYN:
            if not flags & ACK:
                client_syn(self, ckey, saddr, sport, seq, win, data[ihl + 20:start], route,
                           sessions, now)
            return self._take()
        if payload:
            c["clt_cont"] += 1
        revived = None
        if sessions is not None and len(sessions) > 1 and payload and not flags & RST and \
                not all(s.state == CLOSED for s in sessions):
            revived = revive(self, sessions, seq, payload, now)  # a target closed one copy
        if revived is not None:
            sessions = revived
        elif sessions is None or sessions[0].state == CLOSED:
            if not payload or flags & RST:
                c["clt_no_session"] += 1
                return NO_ACTIONS
            if sessions is not None:
                old = sessions[0]
                if not after((seq + len(payload)) & M32, old.expect):
                    c["clt_no_session"] += 1
                    return NO_ACTIONS
                for s in list(sessions):
                    self.destroy(s)
            if self.cfg.only_full:
                self.drop("clt_no_session")
                return self._take()
            sessions = create(self, ckey, saddr, sport, route, now)
            if sessions is None:
                return self._take()
        tsval = None
        if doff > 20 and (payload or flags & FIN):      # a pure ACK's timestamp is never used
            ts = find_ts(data[ihl + 20:start])
            if ts is not None:
                tsval = ts[0]
        if self.selection is None:
            resync = False
            for s in sessions:
                if on_data(s, seq, ack, flags, win, payload, tsval, now):
                    resync = True
            if resync:              # a hole the client will never fill (admit.resync)
                for s in resync_copies(self, sessions, ckey, saddr, sport, route, now) or ():
                    on_data(s, seq, ack, flags, win, payload, tsval, now)
        else:
            feed_selected(self, sessions, seq, ack, flags, win, payload, tsval, now)
        out = self.out                  # _take(), inlined: this is per captured packet
        if out:
            self.out = []
            return out
        return NO_ACTIONS

    def selection_report(self) -> Optional[Dict[str, object]]:
        """For the stats file: the rules and their counters (their totals refreshed in
        ``counters``), or None without a selection."""
        return None if self.selection is None else self.selection.report(self.counters)

    def on_response_record(self, rec: bytes, now: float) -> Actions:
        """One response record (IP header, TCP header, options) from intercept, as it came off
        the channel: checked here (``engine.header.record_view``; ``channel_malformed``)."""
        on_records(self, (rec,), now)
        return self._take()

    def on_response_records(self, recs: Sequence[bytes], now: float) -> Actions:
        """The response records of one channel read, in order (``engine.session.responses``:
        each checked; a response's consecutive segments handed to their session as one)."""
        on_records(self, recs, now)
        out = self.out                  # _take(), inlined: this is per channel read
        if out:
            self.out = []
            return out
        return NO_ACTIONS

    def flush(self, now: float) -> Actions:
        """After a batch of events: the pure ACKs owed for response data no outgoing packet
        has acknowledged. (Then the daemon asks ``next_deadline``.)"""
        if self.ack_set:
            for s in self.ack_set:
                if s.ack_pending and s.state != CLOSED:
                    send_ack(s)
            self.ack_set.clear()
            return self._take()
        return NO_ACTIONS

    def next_deadline(self) -> Optional[float]:
        """When ``on_timer`` next has work. Entries whose session has nothing due then (a
        delayed ACK carried by a request, an RTO cleared by the ACK) are moved to the session's
        real deadline here, so they cost no wake-up."""
        heap = self.heap
        pop = heapq.heappop
        while heap:
            when, _, s = heap[0]
            if when != s.timer_at:
                pop(heap)
                continue
            at = due(s)
            if at <= when:
                return when
            pop(heap)
            s.timer_at = INF
            self.arm(s, at)
        return None

    def on_timer(self, now: float) -> Actions:
        """The deadline ``next_deadline`` gave has passed."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            when, _, s = heapq.heappop(heap)
            if when != s.timer_at:
                continue
            s.timer_at = INF
            on_timer(s, now)
        return self._take()

    def on_send_error(self, fkey: int, now: float) -> Actions:
        """The daemon could not send a packet of this session: retried, or shed after
        ``SEND_FAILS_MAX`` refusals (``engine.session.shed.send_refused``)."""
        send_refused(self, fkey, now)
        return self._take()

    def channel_down(self, now: float) -> int:
        """No intercept is connected: hold the sessions (``engine.session.hold``)."""
        reset(self, now)                # its silence is not the target's (session.stall)
        return pause(self, now)

    def channel_up(self, now: float) -> Tuple[int, Actions]:
        """An intercept is back: (held sessions resumed, their packets)."""
        reset(self, now)
        return resume(self, now), self._take()

    def check_stall(self, now: float) -> Tuple[Optional[StallEvent], Actions]:
        """From housekeeping: whether the target stopped answering (``engine.session.stall``):
        a stall that started or ended since the last check (or None), and the RSTs of the
        sessions shed for it."""
        return check(self, now), self._take()

    # ------------------------------------------------------------------ queries

    def live_routes(self) -> Iterator[Tuple[int, int, int, int]]:
        """(fake ip, fake port, target ip, target port) of sessions still running."""
        for s in self.by_fake.values():
            if s.state != CLOSED:
                yield s.fake_ip, s.fake_port, s.route.target_ip, s.route.target_port

    @property
    def sessions_active(self) -> int:
        return self.live

    def check_memory(self, rss: int, now: float) -> Shed:
        """``-m`` by measurement: ``rss`` is the process's resident size in bytes (the daemon
        reads it); over the cap, sessions are shed (``engine.session.shed.over_rss``). Returns
        how many sessions were shed and their actions (RSTs)."""
        count = over_rss(self, rss, now)
        if count is None:
            return Shed(0, [])
        return Shed(count, self._take())

    def shutdown(self, now: float) -> Actions:
        """Reset every live session on the target (clean exit, end of an offline round)."""
        for s in list(self.by_fake.values()):
            if s.state != CLOSED:
                finish(s, now, "released")
        return self._take()


__all__ = ["NO_ACTIONS", "Actions", "Engine", "Shed"]
