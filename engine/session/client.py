"""The client side of a session: captured SYN and segments in, the in-order buffer, and the
pump that sends buffered segments as far as state, window and pacing allow (pure).

A content segment whose client-ACK field differs from the current request's is a new request;
it is held (``pacing.hold``) until the response to the current request ended. ``-W``
(no_wait) disables pacing. No SYN seen: one is faked (seq = first seq - 1, no TS/WS).
"""

from __future__ import annotations

from typing import Optional

from engine.packets import ACK, FIN, PSH, RST, build_tcp_options
from engine.session.config import OOO_MAX, RST_WINDOW
from engine.session.output import arm_rto, send_seg, send_syn
from engine.session.pacing import hold
from engine.session.packets import payload_sum, syn_options
from engine.session.state import (
    CACK,
    CAP,
    CLOSED,
    DATA,
    ESTABLISHED,
    FLAGS,
    M32,
    SYN_SENT,
    SYN_WAIT,
    TSV,
    Session,
    after,
)
from engine.session.teardown import finish


def on_syn(s: Session, seq: int, win: int, options: bytes, now: float) -> None:
    """The client's SYN: forward it with the client's ISN and (most of) its options."""
    mss, wscale, ts = syn_options(options)
    s.want_ws = wscale is not None
    s.want_ts = ts is not None
    s.syn_opts = build_tcp_options(mss or 1460, wscale, False,
                                   (ts[0], 0) if ts is not None else None)
    if ts is not None:
        s.ts_last = ts[0]
    s.win = win
    if s.sel is not None:
        # with a selection the target sees the SYN only with the first selected byte: a
        # connection with nothing selected is never opened there
        s.isn = seq
        s.syn_held = True
        s.syn_at = now
        s.eng.arm(s, now + s.eng.cfg.session_timeout)
        return
    start(s, seq, now)


def on_data(s: Session, seq: int, ack: int, flags: int, win: int, payload: bytes,
            tsval: Optional[int], now: float) -> bool:
    """A captured client segment with payload and/or FIN (or a bare RST/ACK). True when the
    segment ended the session for a resync (``append``): the caller starts a new copy of the
    connection with it."""
    if flags & RST:
        # like the client's peer (RFC 5961), believe a RST only at or just past the next
        # expected byte: a blind RST with a random seq would end a live copy (seen in the lab)
        if s.state != SYN_WAIT and (seq - s.expect) & M32 >= RST_WINDOW:
            s.eng.counters["clt_rst_ignored"] += 1
            return False
        s.last_act = now
        s.client_rst = True
        pump(s, now)
        return False
    s.last_act = now
    if s.state == SYN_WAIT:
        if not payload and not flags & FIN:
            if s.syn_held and s.hs_ack is None and flags & ACK and seq == ((s.isn + 1) & M32):
                s.hs_ack = ack
                s.rtt = max(0.0005, min(0.5, now - s.syn_at))
            return False
        if s.syn_held:
            s.syn_held = False
            start(s, s.isn, now)
        else:
            fake_syn(s, seq, now)
    elif s.state == CLOSED:
        return False
    if not s.faked:
        s.win = win
    if not payload and not flags & FIN:
        if s.hs_ack is None and flags & ACK and seq == ((s.isn + 1) & M32):
            s.hs_ack = ack
            s.rtt = max(0.0005, min(0.5, now - s.syn_at))
        return False
    if append(s, seq, flags, payload, ack, win, tsval, now):
        return True
    pump(s, now)
    return False


def fake_syn(s: Session, first_seq: int, now: float) -> None:
    """No SYN was seen: fake one (seq = first seq - 1, window 65535, MSS -D, no TS/WS)."""
    eng = s.eng
    eng.counters["recon_for_no_syn"] += 1
    s.faked = True
    s.want_ts = s.want_ws = False
    s.syn_opts = build_tcp_options(eng.cfg.mss)
    s.win = 65535
    start(s, (first_seq - 1) & M32, now)


def start(s: Session, isn: int, now: float) -> None:
    eng = s.eng
    s.isn = isn
    s.expect = s.snd_una = (isn + 1) & M32
    s.snd_nxt = isn
    s.state = SYN_SENT
    s.syn_at = now
    eng.register(s)
    send_syn(s)
    s.rto = max(eng.cfg.rto_min, 1.0)
    s.rto_at = now + s.rto
    s.hs_at = now + eng.cfg.handshake_timeout
    eng.arm(s, s.rto_at)


#: what an HTTP/1.x request starts with: a resync (``gap_is_final``) only starts a new copy
#: there (a body segment would reach the target as a bad request)
REQUEST_STARTS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                  b"CONNECT ", b"TRACE ")


def gap_is_final(s: Session, cack: int, payload: bytes) -> bool:
    """A segment past a gap starts an HTTP request and acknowledges more of the server's bytes
    than the data before the gap did: the online server answered the request the missing bytes
    belong to, so it had them, and the client will never send them again (they were lost to
    the capture, e.g. a kernel drop). A reordering within a request keeps its ACK, so it is
    not taken for one; other protocols (no request line) wait behind the hole as before."""
    if not payload.startswith(REQUEST_STARTS):
        return False
    if s.buf:
        base = s.buf[-1][CACK]
    elif s.unacked:
        base = s.unacked[-1][CACK]
    elif s.req_cack >= 0:
        base = s.req_cack
    elif s.hs_ack is not None:
        base = s.hs_ack
    else:
        return False
    return after(cack, base)


def retire(s: Session, now: float) -> None:
    """A copy the client's data will never reach again (a final gap): what it holds before
    the hole still goes to the target, as if the client had reset after it, then it ends; what
    it parked past the hole is dropped (the new copy starts at the request after it)."""
    s.eng.counters["clt_gap_resync"] += 1
    drain(s, now)


def holds_client_bytes(s: Session) -> bool:
    """The copy still has client bytes the target has not acknowledged."""
    return bool(s.unacked) or any(seg[DATA] for seg in s.buf)


def drain(s: Session, now: float) -> None:
    """No more client data will reach this copy (its client connection is over, or the copy
    was retired): it sends what it holds in order, as if the client had reset after it, then
    ends; what it parked past a hole is dropped."""
    eng = s.eng
    for seg in s.ooo.values():
        s.buffered -= len(seg[DATA])
        eng.buffered_total -= len(seg[DATA])
    s.ooo.clear()
    s.client_rst = True
    pump(s, now)


def append(s: Session, seq: int, flags: int, payload: bytes, cack: int, win: int,
           tsval: Optional[int], now: float, cap: Optional[float] = None) -> bool:
    """Put a client segment into the in-order buffer (trim overlaps, park gaps). A gap that
    can never fill (``gap_is_final``) retires the session instead (``clt_gap_resync``) and
    returns True: the segment starts a new request, and a new copy of the connection
    (``Engine.on_client_packet``) carries it and what follows, instead of every later request
    of a keep-alive connection waiting behind the hole. ``cap``: when the segment was captured
    (a parked one, unparked now), else ``now``."""
    eng = s.eng
    if cap is None:
        cap = now
    plen = len(payload)
    end = (seq + plen + (1 if flags & FIN else 0)) & M32
    expect = s.expect
    if not after(end, expect):
        eng.counters["clt_con_retrans"] += 1
        return False
    if after(seq, expect):
        eng.counters["clt_gap"] += 1
        if plen and s.sel is None and gap_is_final(s, cack, payload):
            retire(s, now)
            return True
        ooo = s.ooo
        if len(ooo) < OOO_MAX:
            # parked bytes count against both caps like in-order ones: a flood at random
            # seqs on a live tuple must not hold memory outside -m/--session-buffer-bytes
            old = ooo.get(seq)
            grow = plen - (len(old[DATA]) if old is not None else 0)
            ooo[seq] = [seq, flags, payload, cack, win, tsval, -1, cap]
            s.buffered += grow
            eng.buffered_total += grow
            eng.check_buffer(s, now)
        return False
    if seq != expect:
        cut = (expect - seq) & M32
        payload = payload[cut:]
        seq = expect
        plen = len(payload)
    seg_max = eng.seg_max
    if plen > seg_max:
        for off in range(0, plen - seg_max, seg_max):
            part = payload[off:off + seg_max]
            s.buf.append([(seq + off) & M32, 0, part, cack, win, tsval, payload_sum(part),
                          cap])
        off = ((plen - 1) // seg_max) * seg_max
        seq, payload = (seq + off) & M32, payload[off:]
        plen = len(payload)
    s.buf.append([seq, flags & (FIN | PSH), payload, cack, win, tsval,
                  payload_sum(payload), cap])
    s.expect = end
    s.buffered += plen
    eng.buffered_total += plen
    if s.ooo:
        nxt = s.ooo.pop(end, None)
        if nxt is not None:
            n = len(nxt[DATA])          # unparked: counted again by the in-order append
            s.buffered -= n
            eng.buffered_total -= n
            return append(s, nxt[0], nxt[1], nxt[2], nxt[3], nxt[4], nxt[5], now, nxt[CAP])
    eng.check_buffer(s, now)
    return False


def pump(s: Session, now: float) -> None:
    """Send buffered segments as far as state, window and pacing allow."""
    if s.state != ESTABLISHED:
        return
    eng = s.eng
    buf = s.buf
    no_wait = eng.cfg.no_wait
    while buf:
        seg = buf[0]
        flags = seg[FLAGS]
        plen = len(seg[DATA])
        if not no_wait and (
                (flags & FIN and s.req_started) or (plen and seg[CACK] != s.req_cack)
        ) and hold(s, seg, now):
            break
        if plen:
            inflight = (s.snd_nxt - s.snd_una) & M32
            if inflight + plen > s.peer_win:
                if s.peer_win == 0 or inflight == 0:
                    arm_rto(s, now)
                break
        elif flags & FIN and s.snd_una != s.snd_nxt and not no_wait:
            break
        buf.popleft()
        send_seg(s, seg, now)
        if plen and (not s.req_started or seg[CACK] != s.req_cack):
            s.req_started = True
            s.req_cack = seg[CACK]
            s.req_rcv = s.rcv_nxt
            s.req_tsv = seg[TSV]
            s.req_at = now
            eng.counters["requests_sent"] += 1
            eng.note_delay(now - seg[CAP])   # how long the request waited here (copy_delay)
            eng.asked(now)          # a request the target should answer (session.stall)
            if not no_wait:
                s.waiting_resp = True
                s.resp_seen = False
                s.eor_at = now + eng.cfg.resp_wait
                eng.arm(s, s.eor_at)
        if flags & FIN:
            s.fin_sent = True
            eng.counters["sent_fin"] += 1
            s.fin_at = now + eng.cfg.close_wait
            eng.arm(s, s.fin_at)
    if not buf and s.client_rst and not (s.waiting_resp and s.req_started):
        finish(s, now, "released")
