"""A session's deadlines: what ``on_timer`` does when one passed, and ``due`` (the earliest)."""

from __future__ import annotations

from engine.session.client import pump
from engine.session.output import arm_rto, send_ack, send_syn
from engine.session.pacing import response_ended
from engine.session.state import (
    CLOSED,
    ESTABLISHED,
    INF,
    M32,
    SYN_SENT,
    SYN_WAIT,
    Session,
)
from engine.session.target import (
    retransmit,
)
from engine.session.teardown import finish


def on_timer(s: Session, now: float) -> None:
    eng = s.eng
    cfg = eng.cfg
    if s.state == CLOSED:
        if now >= s.tw_at:
            eng.destroy(s)
        else:
            eng.arm(s, s.tw_at)
        return
    down = eng.down_since
    if down != INF:
        # held through an intercept outage (engine.session.hold): the target's answers cannot
        # arrive, so its clocks (handshake, response silence) stop, for --hold-timeout at most
        if s.state != SYN_WAIT and now >= max(s.syn_at, down) + cfg.hold_timeout:
            finish(s, now, "sessions_hold_expired")
            return
    elif now >= s.hs_at:
        finish(s, now, "sessions_refused" if s.target_reset else "sessions_no_synack")
        return
    if now >= s.fin_at:
        finish(s, now, "released")
        return
    if now >= s.rto_at:
        s.rto_at = INF
        if s.state == SYN_SENT:
            send_syn(s)
            s.rto = min(s.rto * 2, cfg.rto_max)
            arm_rto(s, now)
        elif s.unacked:
            retransmit(s, now)
            s.rto = min(s.rto * 2, cfg.rto_max)
            arm_rto(s, now)
        elif s.buf and s.peer_win == 0:
            send_ack(s, (s.snd_una - 1) & M32)     # zero-window probe
            s.rto = min(s.rto * 2, cfg.rto_max)
            arm_rto(s, now)
        else:
            pump(s, now)
    if now >= s.ack_at:
        s.ack_at = INF
        if s.ack_pending and s.state == ESTABLISHED:
            send_ack(s)
    if now >= s.eor_at:
        s.eor_at = INF          # first: the pump below may send a request and arm it again
        if s.waiting_resp:
            response_ended(s, now, fast=False)
            pump(s, now)
            if s.ack_pending and s.state == ESTABLISHED:
                send_ack(s)
    if now >= s.lag_at:
        s.lag_at = INF
        if s.state == ESTABLISHED:
            pump(s, now)         # a target response shorter than online's: go on
    if s.state == CLOSED:
        return
    # a held SYN (nothing selected yet) waits for the client only: keep-alive idle time
    busy = bool(s.buf or s.unacked) or (s.state != ESTABLISHED and not s.syn_held)
    if busy and down == INF and now - s.last_resp >= cfg.session_timeout:
        finish(s, now, "sessions_unselected" if s.syn_held else "sessions_timeout")
        return
    if now - s.last_act >= cfg.keepalive_timeout:
        finish(s, now, "sessions_unselected" if s.syn_held else "sessions_timeout")
        return
    eng.arm(s, due(s))


def due(s: Session) -> float:
    """The earliest time ``on_timer`` has anything to do (before it, a call only re-arms)."""
    if s.state == CLOSED:
        return s.tw_at
    cfg = s.eng.cfg
    # a held SYN (nothing selected yet) waits for the client only: keep-alive idle time
    busy = bool(s.buf or s.unacked) or (s.state != ESTABLISHED and not s.syn_held)
    down = s.eng.down_since
    if down != INF:             # held (engine.session.hold): no handshake or silence deadline
        return min(s.fin_at, s.rto_at, s.eor_at, s.ack_at, s.lag_at,
                   s.last_act + cfg.keepalive_timeout,
                   INF if s.state == SYN_WAIT else max(s.syn_at, down) + cfg.hold_timeout)
    return min(s.hs_at, s.fin_at, s.rto_at, s.eor_at, s.ack_at, s.lag_at,
               s.last_act + cfg.keepalive_timeout,
               (s.last_resp + cfg.session_timeout) if busy else INF)
