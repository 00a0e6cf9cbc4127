"""The target side of a session: response records in (the handshake, ACKs, window, FIN/RST),
fast retransmit, and reconnecting while client data still waits (study §3.9) (pure)."""

from __future__ import annotations

from engine.packets import ACK, FIN, PSH, RST, SYN, build_tcp_options
from engine.session.client import pump, start
from engine.session.output import arm_rto, send_ack, send_rst, send_seg, send_syn
from engine.session.pacing import response_ended
from engine.session.packets import payload_sum, rst_packet, syn_options
from engine.session.state import (
    CLOSED,
    DATA,
    ESTABLISHED,
    FLAGS,
    INF,
    M32,
    PSUM,
    SEQ,
    SYN_SENT,
    Session,
    after,
)
from engine.session.teardown import finish


def on_response(s: Session, seq: int, ack: int, flags: int, win: int, plen: int, full: bool,
                options: bytes, now: float, ended: bool = False) -> None:
    """One response header from intercept (the target's segment to our fake client), or
    several consecutive ones joined (``engine.session.responses``): ``ended`` when one before
    the last was short (the response may have ended there)."""
    eng = s.eng
    c = eng.counters
    state = s.state
    if state == CLOSED:
        return
    if state != ESTABLISHED:
        if state == SYN_SENT:
            in_handshake(s, seq, ack, flags, win, options, now)
        else:
            c["resp_stale"] += 1
        return
    s.last_resp = s.last_act = now
    if flags & RST:
        c["resp_rst"] += 1
        c["target_resets"] += 1
        s.target_reset = True
        peer_closed(s, now)
        return
    if flags & SYN:
        if flags & ACK and ack == ((s.isn + 1) & M32):
            c["synack_retrans"] += 1
            send_ack(s)          # our third ACK was lost: the target repeats SYN-ACK
        return
    if s.ts_ok and options:
        tsr = eng.read_ts(options)
        if tsr is not None and not after(s.ts_recent, tsr):
            s.ts_recent = tsr
    new_data = False
    if plen:
        c["resp_cont"] += 1
        end = (seq + plen) & M32
        if after(end, s.rcv_nxt):
            s.rcv_nxt = end
            new_data = True
            s.last_resp_full = full
            if s.retrans_pending:
                s.retrans_pending = False
                c["retrans_succ"] += 1
        s.ack_pending = True
        s.resp_unacked += plen
        if s.resp_unacked >= 2 * s.full_len:
            eng.need_ack(s)          # like a quick ACK: keep bulk responses flowing
        elif s.ack_at == INF:
            s.ack_at = now + eng.cfg.ack_delay     # delayed ACK; a request may carry it
            eng.arm(s, s.ack_at)
    if flags & FIN:
        c["resp_fin"] += 1
        if ((seq + plen) & M32) == s.rcv_nxt and not s.peer_fin:
            s.rcv_nxt = (s.rcv_nxt + 1) & M32
            s.peer_fin = True
    if flags & ACK:
        on_ack(s, ack, win, plen, now)
    if new_data and s.waiting_resp:
        if not s.resp_seen and s.req_started:
            eng.note_latency(now - s.req_at)    # the target's first answer byte
        s.resp_seen = True
        if s.snd_una == s.snd_nxt and (ended or not full or flags & PSH):
            response_ended(s, now, fast=True)
        else:
            s.eor_at = now + max(eng.cfg.eor_min, min(eng.cfg.eor_max, 2 * s.rtt))
            eng.arm(s, s.eor_at)
    if s.peer_fin:
        peer_closed(s, now)      # ends with a RST (or RST + new SYN) unless data waits
        if s.state == ESTABLISHED:
            send_ack(s)         # no ACK of the FIN right before a RST: one packet less
            pump(s, now)         # a FIN the client sent after this one may go now
        return
    pump(s, now)


def retransmit(s: Session, now: float) -> None:
    """Resend the first unacknowledged segment (trimmed to what is still unacked)."""
    eng = s.eng
    while s.unacked:
        seg = s.unacked[0]
        end = (seg[SEQ] + len(seg[DATA]) + (1 if seg[FLAGS] & FIN else 0)) & M32
        if after(end, s.snd_una):
            break
        s.unacked.popleft()
    if not s.unacked:
        return
    seg = s.unacked[0]
    if seg[SEQ] != s.snd_una and after(s.snd_una, seg[SEQ]):
        cut = (s.snd_una - seg[SEQ]) & M32
        data = seg[DATA][cut:]
        seg[SEQ], seg[DATA], seg[PSUM] = s.snd_una, data, payload_sum(data)
    eng.counters["retransmit"] += 1
    s.retrans_pending = True
    snd_nxt = s.snd_nxt
    send_seg(s, seg, now)
    s.snd_nxt = snd_nxt


def on_ack(s: Session, ack: int, win: int, plen: int, now: float) -> None:
    s.peer_win = win << s.peer_wscale
    if after(ack, s.snd_una):
        if after(ack, s.snd_nxt):
            s.snd_nxt = ack
        s.snd_una = ack
        s.dup_acks = s.send_fails = 0
        s.rto = s.eng.cfg.rto_min
        release_acked(s)
        if s.unacked:
            arm_rto(s, now)
        else:
            s.rto_at = INF
    elif ack == s.snd_una and not plen and s.unacked:
        s.dup_acks += 1
        if s.dup_acks == 3:
            retransmit(s, now)
    if s.peer_win == 0 and s.buf:
        s.eng.counters["win_zero"] += 1
        arm_rto(s, now)


def release_acked(s: Session) -> None:
    una = s.snd_una
    unacked = s.unacked
    eng = s.eng
    while unacked:
        seg = unacked[0]
        end = (seg[SEQ] + len(seg[DATA]) + (1 if seg[FLAGS] & FIN else 0)) & M32
        if after(end, una):
            break
        unacked.popleft()
        n = len(seg[DATA])
        s.buffered -= n
        eng.buffered_total -= n


def peer_closed(s: Session, now: float) -> None:
    """Target FIN/RST: reconnect if client data is still waiting, else end the session."""
    has_data = any(seg[DATA] for seg in s.buf)
    if has_data:
        s.eng.counters["reconnect"] += 1
        reconstruct(s, now)
    elif s.fin_sent or not s.buf:
        finish(s, now, "released")


def reconstruct(s: Session, now: float) -> None:
    """Reset the target connection and start again with a faked SYN before the unsent data."""
    eng = s.eng
    if not s.target_reset:
        send_rst(s)
    first = s.buf[0][SEQ]
    for seg in s.unacked:
        s.buffered -= len(seg[DATA])
        eng.buffered_total -= len(seg[DATA])
    s.unacked.clear()
    s.peer_fin = s.fin_sent = s.target_reset = False
    s.waiting_resp = s.req_started = False
    s.ts_ok = False
    s.faked = True
    s.syn_opts = build_tcp_options(eng.cfg.mss)
    s.want_ts = s.want_ws = False
    s.hs_ack = None
    s.req_rcv = -1               # the new connection has a new ISN: no byte count yet
    start(s, (first - 1) & M32, now)


def in_handshake(s: Session, seq: int, ack: int, flags: int, win: int, options: bytes,
                 now: float) -> None:
    eng = s.eng
    if flags & SYN and flags & ACK and ack == ((s.isn + 1) & M32):
        eng.counters["conns"] += 1
        s.target_reset = False                  # it answers now (a refused SYN was retried)
        mss, wscale, ts = syn_options(options)
        s.rcv_nxt = (seq + 1) & M32
        s.snd_una = s.snd_nxt = ack
        s.peer_wscale = min(wscale, 14) if (wscale is not None and s.want_ws) else 0
        s.peer_win = win
        s.ts_ok = s.want_ts and ts is not None
        if ts is not None and s.ts_ok:
            s.ts_recent = ts[0]
        if mss:
            s.full_len = mss - (12 if s.ts_ok else 0)
        s.state = ESTABLISHED
        s.hs_at = INF
        s.rto = eng.cfg.rto_min
        s.rto_at = INF
        s.last_resp = now
        send_ack(s)
        if s.hs_ack is None and not s.faked:
            # the client's third ACK was not captured (pure ACKs are filtered in the
            # kernel): the copy's own handshake time stands in for the online one
            s.rtt = max(0.0005, min(0.5, now - s.syn_at))
        if s.hs_ack is not None:
            # pacing starts from the client's view right after its handshake: a first
            # request sent only after a server greeting waits for the target's greeting
            s.req_cack = s.hs_ack
            s.req_rcv = s.rcv_nxt
            s.req_tsv = None
            s.req_at = now
            s.req_started = False
            s.waiting_resp = not eng.cfg.no_wait
            s.eor_at = now + eng.cfg.resp_wait
            eng.arm(s, s.eor_at)
        pump(s, now)
    elif flags & RST:
        eng.counters["resp_rst"] += 1
        eng.counters["target_refused"] += 1     # nothing listens there (or a firewall REJECT)
        s.target_reset = True                   # the SYN is retried until the handshake timeout
    elif flags & ACK and not flags & SYN:
        # a leftover connection on this tuple at the target: reset it, then SYN again
        eng.counters["reconnect"] += 1
        route = s.route
        eng.emit(s, rst_packet(s.fake_ip, route.target_ip, eng.next_ident(),
                               s.fake_port, route.target_port, ack, 0))
        eng.counters["sent_rst"] += 1
        send_syn(s)
