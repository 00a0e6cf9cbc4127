"""Holding sessions through an intercept outage (pure; functions over the session table).

While no intercept is connected (tcpcopy ``-L``), the target's answers cannot reach tcpcopy:
its SYN-ACKs and ACKs are lost on the assistant. Without holding, every session that starts
then is lost. With ``cfg.hold_timeout`` > 0 the table holds them instead:

- ``pause``: the channel went down. New sessions are still admitted (bounded by
  ``--max-sessions`` and ``-m`` like any other, counted as ``table_full``/``memory_shed`` when
  not), their SYNs and requests go out as usual, and the target's clocks of every session stop
  (handshake timeout, response silence: ``engine.session.timers``): a target that cannot be
  heard is not a target that does not answer. A session held longer than ``hold_timeout``
  (since it started or since the outage began) is given up: ``sessions_hold_expired``.
- ``resume``: an intercept is back (the daemon has re-registered every live route on it). Every
  held session goes on at once: one still in its handshake sends its SYN again (the target
  answers a repeated SYN with its SYN-ACK, and retransmits that SYN-ACK by itself for seconds),
  one with unacknowledged data retransmits it, and the clocks start again from now.

Counters: ``sessions_held`` (live when the channel went down, or started while it was down),
``sessions_resumed`` (still live when it came back), ``sessions_hold_expired``.
"""

from __future__ import annotations

from typing import Dict, Protocol

from engine.session.output import arm_rto, send_syn
from engine.session.state import CLOSED, ESTABLISHED, INF, SYN_SENT, Host, Session
from engine.session.target import retransmit
from engine.session.timers import due


class Holding(Host, Protocol):
    """What holding uses of the session table."""

    by_fake: Dict[int, Session]
    intercepts_up: bool


def pause(t: Holding, now: float) -> int:
    """No intercept is connected any more: hold the live sessions (returns how many)."""
    if not t.intercepts_up:
        return 0
    t.intercepts_up = False
    if t.cfg.hold_timeout <= 0:
        return 0                    # not holding: new sessions are refused until resume
    t.down_since = now
    held = 0
    for s in t.by_fake.values():
        if s.state != CLOSED:
            held += 1
            t.arm(s, due(s))        # the hold deadline replaces the handshake/silence ones
    t.counters["sessions_held"] += held
    return held


def resume(t: Holding, now: float) -> int:
    """An intercept is connected again and knows every live route: the held sessions go on
    (returns how many). Their packets are among the table's next actions."""
    t.intercepts_up = True
    if t.down_since == INF:
        return 0
    t.down_since = INF
    cfg = t.cfg
    resumed = 0
    for s in list(t.by_fake.values()):
        if s.state == CLOSED:
            continue
        resumed += 1
        s.last_resp = now           # the silence of the outage was not the target's
        if s.state == SYN_SENT:
            send_syn(s)             # a fresh SYN-ACK, now that someone listens for it
            s.rto = max(cfg.rto_min, 1.0)
            s.hs_at = now + cfg.handshake_timeout
            arm_rto(s, now)
        elif s.state == ESTABLISHED and s.unacked:
            s.rto = cfg.rto_min
            retransmit(s, now)      # its ACK (or the response) was lost with the channel
            arm_rto(s, now)
        t.arm(s, due(s))
    t.counters["sessions_resumed"] += resumed
    return resumed


__all__ = ["Holding", "pause", "resume"]
