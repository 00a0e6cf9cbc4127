"""A target that stops answering (pure; functions over the session table).

A target whose application is frozen (a stopped process, a paused VM, a GC pause of minutes)
still has a kernel: it completes handshakes until its accept queue is full and acknowledges
data until its receive buffers are, but it sends no response byte. tcpcopy would go on admitting
sessions and holding their client bytes for it (up to ``-m`` and ``-t``): a copier on a
production host must not balloon because the *test* server is down (the copy of a dead target
is lost anyway). With ``cfg.target_stall`` = S > 0:

- an **ask** is a request the table sent to the target (its first segment, ``client.pump``);
  an **answer** is a response record with payload, FIN or RST for a live session (pure ACKs,
  window updates and SYN-ACKs are not answers: a frozen application's kernel still sends them,
  and takes up to a receive buffer of each request: several uploads that last longer than S
  with nothing else answered look like a silent target);
- the target is **stalled** when, with the intercept channel up (an outage is
  ``engine.session.hold``'s: its silence is not the target's), the first ask since the last
  answer is at least S old, at least ``MIN_ASKS`` asks went out since that answer, the target
  was **heard** since that first ask and within the last ``FRESH`` x S (any record of a live
  session: its kernel acks, so intercept and the channel carry what it says right now; an
  intercept that is shutting down, before the channel's loss shows, is not heard) or nothing
  at all was heard for ``deaf_after`` (3 S, at least 5 s: a dead host, or an intercept that
  lags, is given longer), what the table holds (``held``: ``-m``'s estimate) grew by
  ``cfg.stall_hold`` (1 MiB) since that first ask (a slow target with a few requests open
  costs nothing and is left alone), and two checks in a row (``check``, from the daemon's
  timer every ``CHECK_INTERVAL``) saw it with no answer in between. The second sighting
  makes a paused copier (its own loop late, the answers still queued in its socket) not a
  stalled target: the loop reads them before the next check;
- while stalled: new client connections are refused (``target_stalled``, once per connection
  however many of its packets come), except one probe every ``PROBE_INTERVAL`` s whose request
  provokes the answer once the target is back; a live session holding client bytes for longer
  than S is shed (``sessions_stall_shed``, reset on the target): the held bytes stay bounded by
  about S of traffic;
- the first answer ends the stall (``answered``, on the hot path: one comparison); a channel
  outage ends it too (``reset``).

``StallEvent`` tells the daemon what to log: the start, and the end with its length and how
many sessions were refused and shed meanwhile.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Protocol, Set

from engine.session.config import SESSION_OVERHEAD
from engine.session.state import CLOSED, INF, Host, Session
from engine.session.teardown import finish

MIN_ASKS = 3                # requests unanswered before the silence counts (one slow request
#                             alone, e.g. a long poll, is not a stalled target)
FRESH = 0.5                 # heard within this share of S: intercept is forwarding right now
DEAF_FACTOR = 3.0           # nothing heard at all: the silence must last this many times S,
DEAF_MIN = 5.0              # and at least this long (an intercept late on a loaded host)
REFUSED_MAX = 65536         # client connections remembered as refused in one stall (beyond:
#                             each packet counted)
CHECK_INTERVAL = 0.1        # s between two checks (the daemon's stall timer)
PROBE_INTERVAL = 1.0        # s between two sessions admitted while stalled (their requests
#                             provoke the first answer when the target is back)


class StallEvent(NamedTuple):
    """A stall started (``ended`` False) or ended: when, and over the stall: seconds, sessions
    refused (``target_stalled``) and shed (``sessions_stall_shed``)."""

    ended: bool
    at: float
    seconds: float
    refused: int
    shed: int


class Stalling(Host, Protocol):
    """What stall detection uses of the session table."""

    by_fake: Dict[int, Session]
    intercepts_up: bool
    asked_at: float             # the first ask since the last answer (INF: none)
    asks: int                   # asks since the last answer
    asked_mem: int              # what the table held (estimate) at asked_at
    live: int
    answered_at: float          # the last answer (-INF: none yet)
    heard_at: float             # the last record of a live session (-INF: none yet)
    stalled_since: float        # INF: not stalled
    stall_seen: float           # asked_at at the first sighting of the silence (INF: none)
    probe_at: float             # while stalled, the next time a probe session may start
    stall_base: Dict[str, int]  # target_stalled, sessions_stall_shed when the stall began
    stall_ended: Optional[StallEvent]
    stall_refused: Set[int]     # client connections refused in this stall

    def drop(self, reason: str) -> None: ...


def watching(t: Stalling) -> bool:
    """Whether ``check`` has anything to watch: a request unanswered, a stall, or a stall's end
    not yet reported. When not, the daemon parks its timer until the next ask (an idle copier
    wakes up for nothing ten times a second otherwise)."""
    return t.cfg.target_stall > 0 and (t.asked_at != INF or t.stalled_since != INF
                                       or t.stall_ended is not None)


def deaf_after(stall: float) -> float:
    """How long nothing at all may be heard (not even the target's kernel) before a stall."""
    return max(DEAF_FACTOR * stall, DEAF_MIN)


def asked(t: Stalling, now: float) -> None:
    """A request went out to the target."""
    if t.asked_at == INF or t.answered_at >= t.asked_at:
        t.asked_at = now
        t.asks = 1
        t.asked_mem = held(t)
    else:
        t.asks += 1


def answered(t: Stalling, now: float) -> None:
    """The target answered (payload, FIN or RST of a live session): the silence is over, and a
    stall ends."""
    t.answered_at = now
    t.asked_at = INF
    t.asks = 0
    t.stall_seen = INF
    if t.stalled_since != INF:
        _end(t, now)


def admit(t: Stalling, ckey: int, now: float) -> bool:
    """Whether a new session of client connection ``ckey`` may start (while stalled: only a
    probe now and then; a refused connection is counted once)."""
    if t.stalled_since == INF:
        return True
    if now >= t.probe_at:
        t.probe_at = now + PROBE_INTERVAL
        return True
    refused = t.stall_refused
    if ckey not in refused:
        if len(refused) < REFUSED_MAX:
            refused.add(ckey)
        t.drop("target_stalled")
    return False


def reset(t: Stalling, now: float) -> None:
    """The channel went down or came back: the silence so far was not the target's."""
    t.asked_at = INF
    t.asks = 0
    t.stall_seen = INF
    if t.stalled_since != INF:
        _end(t, now)


def check(t: Stalling, now: float) -> Optional[StallEvent]:
    """From the daemon's timer: start a stall (returned) when the target has been silent
    (module docstring), shed what waits on it while stalled; a stall that ended since the last
    check is returned (once)."""
    stall = t.cfg.target_stall
    ended, t.stall_ended = t.stall_ended, None
    if stall <= 0:
        return ended
    if t.stalled_since != INF:
        if t.buffered_total:
            shed(t, now)
        return ended
    if not t.intercepts_up or t.down_since != INF:
        reset(t, now)
        return ended
    if not silent(t, now, stall):
        t.stall_seen = INF
        return ended
    if t.stall_seen != t.asked_at:
        t.stall_seen = t.asked_at   # first sighting: again at the next check, after a loop turn
        return ended
    t.stalled_since = now
    t.probe_at = now + PROBE_INTERVAL
    c = t.counters
    t.stall_base = {"target_stalled": c["target_stalled"],
                    "sessions_stall_shed": c["sessions_stall_shed"]}
    shed(t, now)
    return StallEvent(False, now, now - t.asked_at, 0, c["sessions_stall_shed"]
                      - t.stall_base["sessions_stall_shed"])


def held(t: Stalling) -> int:
    """What the table holds, by estimate (``-m``'s: client bytes + a fixed size per session)."""
    return t.buffered_total + t.live * SESSION_OVERHEAD


def silent(t: Stalling, now: float, stall: float) -> bool:
    """Requests unanswered for ``stall`` s while the target is heard right now, or for
    ``deaf_after`` while nothing at all is heard, and what the table holds grew by
    ``cfg.stall_hold`` since (a slow target with a few requests outstanding costs nothing:
    it is left alone; the stall is there to keep memory flat)."""
    if t.asked_at == INF or t.asks < MIN_ASKS:
        return False
    waited = now - t.asked_at
    if waited < stall or held(t) - t.asked_mem < t.cfg.stall_hold:
        return False
    heard = t.asked_at < t.heard_at and now - t.heard_at <= FRESH * stall
    return heard or waited >= deaf_after(stall)


def shed(t: Stalling, now: float) -> int:
    """Shed the live sessions that have held client bytes for longer than the stall delay
    (what they hold waits on the silent target); returns how many."""
    limit = now - t.cfg.target_stall
    victims = [s for s in t.by_fake.values()
               if s.state != CLOSED and s.buffered and s.created <= limit]
    for s in victims:
        finish(s, now, "sessions_stall_shed")
    return len(victims)


def _end(t: Stalling, now: float) -> None:
    c = t.counters
    base = t.stall_base
    t.stall_ended = StallEvent(True, now, now - t.stalled_since,
                               c["target_stalled"] - base.get("target_stalled", 0),
                               c["sessions_stall_shed"] - base.get("sessions_stall_shed", 0))
    t.stalled_since = INF
    t.probe_at = INF
    t.stall_refused.clear()


__all__ = ["CHECK_INTERVAL", "DEAF_FACTOR", "DEAF_MIN", "FRESH", "MIN_ASKS", "PROBE_INTERVAL",
           "REFUSED_MAX", "StallEvent", "Stalling", "admit", "answered", "asked", "check",
           "deaf_after", "held", "reset", "shed", "silent"]
