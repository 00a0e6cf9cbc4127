"""Shedding sessions (pure; functions over the session table): what tcpcopy gives up so that
it keeps running.

- ``over_buffer``: a session whose buffered client bytes pass ``cfg.session_buffer_bytes``
  (``buffer_overflow``), or any session while the process-wide estimate (buffers +
  ``SESSION_OVERHEAD`` per live session) passes ``-m`` (``memory_shed``);
- ``over_rss``: ``-m`` by measurement (the daemon reads its resident size); while the last
  measure was over, ``admit.create`` refuses new sessions (``rss_over``);
- ``send_refused``: a packet the local stack refused to send (retried like a lost segment,
  shed after ``SEND_FAILS_MAX`` refusals in a row).

Every shed session is counted as ``sessions_shed`` and reset on the target (``finish``).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Protocol, Sequence

from engine.actions import Action
from engine.session.config import SESSION_OVERHEAD
from engine.session.state import CLOSED, SYN_SENT, Host, Session
from engine.session.teardown import finish

SEND_FAILS_MAX = 12              # refused sends in a row (no ACK progress) before shedding
MEMORY_SETTLE = 5.0              # s after an RSS shed before RSS is acted on again (freed
#                                  memory shows in RSS late, if at all: do not shed twice for it)


class Shed(NamedTuple):
    """What ``check_memory`` did: how many sessions it shed, and the actions that caused."""

    sessions: int
    actions: Sequence[Action]


class Shedding(Host, Protocol):
    """What shedding uses of the session table."""

    by_fake: Dict[int, Session]
    live: int
    mem_settle_at: float
    rss_over: bool          # the last RSS check found the process over -m
    mem_anchor: int         # the estimate when RSS was first shed for (-1: none)

    def drop(self, reason: str) -> None: ...


def over_buffer(t: Shedding, sess: Session, now: float) -> None:
    """Shed a session whose buffer or the process-wide estimate is over its cap."""
    if sess.buffered > t.cfg.session_buffer_bytes:
        t.drop("buffer_overflow")
        finish(sess, now, "sessions_shed")
    elif t.buffered_total + t.live * SESSION_OVERHEAD > t.cfg.memory_limit:
        t.drop("memory_shed")
        finish(sess, now, "sessions_shed")


def over_rss(t: Shedding, rss: int, now: float) -> Optional[int]:
    """``-m`` by measurement: ``rss`` is the process's resident size in bytes. Over the cap,
    shed live sessions, those buffering the most first, then the oldest (so a table of empty
    sessions, e.g. a SYN flood, is shed too), until their estimated size covers the excess: at
    least one, at most half the table. Each is counted as ``memory_shed`` + ``sessions_shed``.
    Then RSS is ignored for ``MEMORY_SETTLE`` s. While over, new sessions are refused
    (``memory_shed``, in ``admit.create``). RSS rarely comes down after a shed (the allocator
    keeps the freed memory for the next sessions): until RSS is under the cap again, what the
    table's estimate shrank since the first shed is credited against it, so a table that fits
    is not shed again and again. Returns how many sessions were shed, or None when RSS was not
    acted on (under the cap, an empty table, settling)."""
    estimate = t.buffered_total + t.live * SESSION_OVERHEAD
    if rss <= t.cfg.memory_limit:
        t.mem_anchor = -1
    credit = max(0, t.mem_anchor - estimate) if t.mem_anchor >= 0 else 0
    excess = rss - credit - t.cfg.memory_limit
    t.rss_over = excess > 0
    if excess <= 0 or not t.live or now < t.mem_settle_at:
        return None
    live = [s for s in t.by_fake.values() if s.state != CLOSED]
    live.sort(key=lambda s: (-s.buffered, s.created))
    freed = count = 0
    for s in live[:max(1, len(live) // 2)]:
        if freed >= excess:
            break
        freed += s.buffered + SESSION_OVERHEAD
        t.drop("memory_shed")
        finish(s, now, "sessions_shed")
        count += 1
    t.mem_settle_at = now + MEMORY_SETTLE
    t.mem_anchor = max(t.mem_anchor, estimate)
    return count


def send_refused(t: Shedding, fkey: int, now: float) -> None:
    """The daemon could not send a packet of this session (the local stack refused it, e.g. a
    firewall's EPERM): like a segment lost on the wire, the retransmission timer sends it again
    (``send_retried``); a session refused ``SEND_FAILS_MAX`` times with no progress in between
    is shed (no RST: sending is what fails)."""
    t.counters["send_errors"] += 1
    s = t.by_fake.get(fkey)
    if s is not None and s.state != CLOSED:
        s.send_fails += 1
        if s.send_fails > SEND_FAILS_MAX:
            s.target_reset = True
            finish(s, now, "sessions_shed")
        else:
            t.counters["send_retried"] += 1
            if s.state == SYN_SENT:
                # our SYN never left: try again soon (not after the 1 s SYN timeout), and the
                # target's handshake clock starts again (it never saw the SYN)
                s.rto_at = now + t.cfg.rto_min
                s.hs_at = now + t.cfg.handshake_timeout
                t.arm(s, s.rto_at)


__all__ = ["MEMORY_SETTLE", "SEND_FAILS_MAX", "Shed", "Shedding", "over_buffer", "over_rss",
           "send_refused"]
