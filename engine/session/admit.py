"""Admission: which client connections get copies, and their sessions' fake tuples (pure).

A client connection is admitted when it is sampled in (``-r``), an intercept is connected (or
the table holds sessions through an outage, ``engine.session.hold``), the table has room
(``--max-sessions``) and both the memory estimate and the last RSS check allow it (``-m``); it
then gets ``-n`` replicas towards each target of its port, each with its own fake tuple from
the ``AddressMapper`` (intercept routes the responses by it). ``create`` builds them,
``client_syn`` handles a client SYN (a retransmission, or a new connection replacing an old
one) and ``revive`` replaces the copies a target closed while the others of the connection go
on.
Functions over the table (``Admitting``, implemented by ``engine.session.table.Engine``).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Protocol, Tuple

from engine.session import CLOSED, INF, M32, Session, after, finish, on_syn
from engine.session.client import drain, holds_client_bytes
from engine.session.config import SESSION_OVERHEAD, AddressMapper, Route, sample_keep
from engine.session.selected import ClientSelect
from engine.session.stall import Stalling, admit


class Admitting(Stalling, Protocol):
    """What admission uses of the session table."""

    mapper: AddressMapper
    by_client: Dict[int, List[Session]]
    by_fake: Dict[int, Session]
    live: int
    intercepts_up: bool
    rss_over: bool

    def drop(self, reason: str) -> None: ...


def create(t: Admitting, ckey: int, saddr: int, sport: int, routes: Tuple[Route, ...],
           now: float) -> Optional[List[Session]]:
    """The sessions of one client connection: ``-n`` replicas towards each target (None if
    it is not admitted; the reason is counted)."""
    cfg = t.cfg
    if not sample_keep(saddr, sport, cfg.sample_pct):
        t.drop("sampled_out")
        return None
    held = not t.intercepts_up
    if held and t.down_since == INF:
        t.drop("sessions_no_intercept")     # not holding (engine.session.hold): refused
        return None
    copies = cfg.replicas * len(routes)
    if not admit(t, ckey, now):       # the target stopped answering (engine.session.stall)
        return None
    if t.live + copies > cfg.max_sessions:
        t.drop("table_full")
        return None
    if t.rss_over or (t.buffered_total + (t.live + copies) * SESSION_OVERHEAD
                      > cfg.memory_limit):
        t.drop("memory_shed")        # -m measured, or by estimate: empty sessions cost memory
        return None
    out: List[Session] = []
    mapper = t.mapper
    counters = t.counters
    for i in range(copies):         # one fake tuple per copy: intercept routes by it
        route = routes[i // cfg.replicas]
        pref = (mapper.fake_ip(saddr, i) << 16) | mapper.preferred_port(sport, i)
        fkey = mapper.allocate(saddr, sport, i)
        if fkey is None:
            t.drop("tuple_refused")
            continue
        if fkey != pref:
            counters["tuple_remapped"] += 1
        s = Session(t, ckey, fkey, route, now)
        t.by_fake[fkey] = s
        t.live += 1
        counters["sessions_created"] += 1
        if held:
            counters["sessions_held"] += 1
        out.append(s)
    if not out:
        return None
    t.by_client[ckey] = out
    return out


def resync_copies(t: Admitting, sessions: List[Session], ckey: int, saddr: int, sport: int,
                  routes: Tuple[Route, ...], now: float) -> Optional[List[Session]]:
    """A hole in the client's data that will never fill (``client.retire``): new copies of the
    connection start at the segment past it, the first of a new request (a faked handshake),
    on new fake tuples, while the old ones send what they hold from before the hole (a copy
    that did not retire itself is ended). Returns the new copies (None: not admitted)."""
    for s in sessions:
        if s.state != CLOSED and not s.client_rst:
            finish(s, now, "sessions_obsolete")
    return create(t, ckey, saddr, sport, routes, now)


def client_syn(t: Admitting, ckey: int, saddr: int, sport: int, seq: int, win: int,
               options: bytes, route: Tuple[Route, ...], sessions: Optional[List[Session]],
               now: float) -> None:
    """A client SYN: a retransmission of the current one is counted; otherwise new copies
    start their handshakes, and the old copies of that tuple end. An old copy that still holds
    client bytes for the target is left to send them first, on its own fake tuple
    (``sessions_drained``): the client reused its port while the copy of its last connection
    was still waiting on the target (a client that opens connections fast wraps its ports in
    seconds; a held session waits for as long as an intercept outage lasts)."""
    t.counters["clt_syn"] += 1
    if sessions is not None:
        old = sessions[0]
        if old.state != CLOSED and not old.faked and old.isn == seq:
            t.counters["clt_con_retrans"] += 1      # the client retransmitted its SYN
            return
        for s in list(sessions):
            if s.state != CLOSED and holds_client_bytes(s):
                t.counters["sessions_drained"] += 1
                sessions.remove(s)                  # client packets go to the new copies
                drain(s, now)                       # (destroyed after its linger as usual)
                continue
            if s.state != CLOSED:
                finish(s, now, "sessions_obsolete")
            t.destroy(s)
        if not sessions and t.by_client.get(ckey) is sessions:
            del t.by_client[ckey]                   # (when no new copy is admitted)
    created = create(t, ckey, saddr, sport, route, now)
    if created is not None:
        selection = t.cfg.selection
        if selection is not None:
            sel = ClientSelect(selection, (seq + 1) & M32, t.counters)
            for s in created:
                s.sel = sel
        for s in created:
            on_syn(s, seq, win, options, now)


def revive(t: Admitting, sessions: List[Session], seq: int, payload: bytes,
           now: float) -> Optional[List[Session]]:
    """Some copies of this client connection ended (their target closed, e.g. nginx after a
    500) while others go on: new client data gets a new copy towards each of those targets,
    like a first copy of a connection caught mid-way (a faked SYN). Returns the connection's
    sessions when any copy was replaced, else None."""
    current: List[Optional[Session]] = list(sessions)
    replaced = False
    for i, old in enumerate(sessions):
        if old.state != CLOSED:
            continue
        if old.sel is None and not after((seq + len(payload)) & M32, old.expect):
            continue                # a retransmission of what that copy had
        t.destroy(old)
        current[i] = None
        if (not t.intercepts_up and t.down_since == INF) or t.live >= t.cfg.max_sessions:
            continue
        if not admit(t, old.ckey, now):
            continue
        fkey = t.mapper.allocate(old.ckey >> 64, (old.ckey >> 48) & 0xFFFF, i)
        if fkey is None:
            t.drop("tuple_refused")
            continue
        s = Session(t, old.ckey, fkey, old.route, now)
        s.sel = old.sel
        t.by_fake[fkey] = s
        t.live += 1
        t.counters["sessions_created"] += 1
        t.counters["sessions_revived"] += 1
        if not t.intercepts_up:
            t.counters["sessions_held"] += 1
        current[i] = s
        replaced = True
    if not replaced:
        return None
    alive = [x for x in current if x is not None]
    t.by_client[alive[0].ckey] = alive
    return alive


__all__ = ["SESSION_OVERHEAD", "Admitting", "client_syn", "create", "resync_copies", "revive"]
