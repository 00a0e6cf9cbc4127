"""When the next request may go: the client's ACK field counts the response bytes the client
had online before sending it; the target must have sent as many (pure)."""

from __future__ import annotations

from engine.session.state import (
    CACK,
    HALF,
    INF,
    M32,
    ONLINE_MS_MAX,
    TSV,
    Segment,
    Session,
)


def hold(s: Session, seg: Segment, now: float) -> bool:
    """Whether a new request (or the client's FIN) ``seg`` must still wait.

    Its client ACK minus the current request's is how many response bytes the client had
    received online before sending it; once the target sent as many since the current
    request went out, the response is over: no timer, and no guess from PSH or segment
    sizes (nginx sends a big file's header in a short PSH segment, then the body). A target
    that still owes bytes gets as long as online took (the client's TCP timestamps between
    the two segments, read as the usual 1 ms clock; e.g. a rate-limited response pauses)
    and then ``eor_lag`` of quiet after a short segment (its response may just be shorter),
    ``resp_wait`` after a full-size one (more is coming). Without a usable
    count the quiet-period timers decide (``waiting_resp``)."""
    if s.req_rcv < 0:
        return s.waiting_resp
    want = (seg[CACK] - s.req_cack) & M32
    if want >= HALF:
        return s.waiting_resp
    if ((s.rcv_nxt - s.req_rcv) & M32) >= want:
        if s.waiting_resp:
            response_ended(s, now, fast=True)
        return False
    if s.waiting_resp:
        return True
    cfg = s.eng.cfg
    # the last segment full-size: more was coming, the target waits on us (ACK clock,
    # a loaded copier); short: it may have ended a shorter response
    lag = cfg.resp_wait if s.last_resp_full else cfg.eor_lag
    deadline = s.last_resp + lag
    tsv, req_tsv = seg[TSV], s.req_tsv
    if tsv is not None and req_tsv is not None:
        online_ms = (tsv - req_tsv) & M32
        if online_ms < ONLINE_MS_MAX:
            deadline = max(deadline, s.req_at + online_ms / 1000.0 + lag)
    if now < deadline:
        s.lag_at = deadline
        s.eng.arm(s, deadline)
        return True
    s.eng.counters["pacing_lag"] += 1
    return False


def response_ended(s: Session, now: float, fast: bool) -> None:
    s.waiting_resp = False
    s.eor_at = INF
    s.eng.counters["pacing_fast" if fast else "pacing_timer"] += 1
