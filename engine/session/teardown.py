"""The end of a session: RST the target (frees its socket), then linger (pure)."""

from __future__ import annotations

from engine.session.output import send_rst
from engine.session.state import (
    CLOSED,
    INF,
    SYN_WAIT,
    Session,
)


def finish(s: Session, now: float, reason: str) -> None:
    """End the session: RST the target (frees its socket), then linger (TIME_WAIT-like)."""
    if s.state == CLOSED:
        return
    eng = s.eng
    if s.state != SYN_WAIT and not s.target_reset:
        send_rst(s)
    s.state = CLOSED
    eng.counters["sessions_time_wait"] += 1
    if reason != "released":
        eng.counters[reason] += 1
    eng.drop_buffers(s)
    s.hs_at = s.rto_at = s.eor_at = s.fin_at = s.ack_at = s.lag_at = INF
    s.tw_at = now + eng.cfg.time_wait
    eng.arm(s, s.tw_at)
