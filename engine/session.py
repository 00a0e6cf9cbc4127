"""One emulated TCP client session towards the target (sans-I/O, pure).

A ``Session`` acts as the client side of TCP: captured client segments are its application
data (their sequence numbers are kept, study §3.1); the target's response headers (records from
intercept) teach it the target ISN, ACKs, window and when a response ended. It never touches a
socket or a clock: the owning ``engine.sesstable.Engine`` passes ``now`` in, collects the
packets it emits (``Engine.emit``) and arms its timer (``Engine.arm``).

Pacing: a content segment whose client-ACK field differs from the current request's is a new
request; it is held until the response to the current request ended. The end is detected
without timers when the path is fast (target ACKed everything we sent and the last response
segment was short or carried PSH); otherwise after a short quiet period (``eor``), or
``resp_wait`` when the target sends nothing at all. ``-W`` (no_wait) disables pacing.
The handshake completion and the pacing decision live in ``engine.sesspace`` (``SessionPace``),
the closing/timer half in ``engine.sessclose`` (``SessionEnd``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, Optional

from engine.packets import ACK, FIN, PSH, RST, SYN, build_tcp_options
from engine.sessclose import (
    CACK,
    CLOSED,
    DATA,
    ESTABLISHED,
    FLAGS,
    INF,
    M32,
    PSUM,
    SEQ,
    SYN_SENT,
    SYN_WAIT,
    TSV,
    WIN,
    Segment,
    after,
)
from engine.sesspace import SessionPace
from engine.sesspkt import build_packet, payload_sum, syn_options, ts_option

if TYPE_CHECKING:
    from engine.sesscfg import Route
    from engine.sesstable import Engine

RST_WINDOW = 1 << 16        # a client RST further than this past ``expect`` is not believed
OOO_MAX = 1024              # out-of-order client segments parked per session

__all__ = ["CLOSED", "ESTABLISHED", "INF", "M32", "SYN_SENT", "SYN_WAIT", "Segment", "Session",
           "after"]


class Session(SessionPace):
    """State of one copied connection (one replica of one client connection)."""

    __slots__ = (
        "ack_at", "ack_pending", "buf", "buffered", "ckey", "client_rst", "created", "dup_acks",
        "eng", "eor_at", "expect", "fake_ip", "fake_port", "faked", "fin_at", "fin_sent", "fkey",
        "full_len", "hs_ack", "hs_at", "isn", "lag_at", "last_act", "last_resp", "last_resp_full",
        "ooo",
        "peer_fin", "peer_win", "peer_wscale", "rcv_nxt", "req_at", "req_cack", "req_rcv",
        "req_started", "req_tsv",
        "resp_seen",
        "resp_unacked", "retrans_pending", "route", "rto", "rto_at", "rtt", "snd_nxt", "snd_una",
        "state", "syn_at", "syn_opts", "target_reset", "timer_at", "ts_last", "ts_ok", "ts_recent",
        "tw_at", "unacked", "waiting_resp", "want_ts", "want_ws", "win",
    )

    def __init__(self, eng: Engine, ckey: int, fkey: int, route: Route, now: float) -> None:
        self.eng, self.ckey, self.fkey, self.route = eng, ckey, fkey, route
        self.fake_ip, self.fake_port = fkey >> 16, fkey & 0xFFFF
        self.state = SYN_WAIT
        self.faked = False
        self.isn = self.snd_nxt = self.snd_una = self.rcv_nxt = self.expect = 0
        self.buf: Deque[Segment] = deque()
        self.unacked: Deque[Segment] = deque()
        self.ooo: Dict[int, Segment] = {}
        self.buffered = 0
        self.peer_win = 65535
        self.peer_wscale = 0
        self.win = 65535
        self.ts_ok = self.want_ts = self.want_ws = False
        self.ts_last = self.ts_recent = 0
        self.syn_opts = b""
        self.hs_ack: Optional[int] = None
        self.req_cack = self.req_rcv = -1
        self.req_tsv: Optional[int] = None
        self.req_at = now
        self.req_started = self.waiting_resp = self.resp_seen = self.last_resp_full = False
        self.ack_pending = self.client_rst = self.fin_sent = self.peer_fin = False
        self.target_reset = self.retrans_pending = False
        self.dup_acks = self.resp_unacked = 0
        self.ack_at = INF
        self.rtt = eng.cfg.rtt_default
        self.rto = eng.cfg.rto_min
        self.full_len = 1448
        self.created = self.last_act = self.last_resp = self.syn_at = now
        self.hs_at = self.rto_at = self.eor_at = self.tw_at = self.fin_at = self.lag_at = INF
        self.timer_at = INF

    # ------------------------------------------------------------------ client side

    def on_syn(self, seq: int, win: int, options: bytes, now: float) -> None:
        """The client's SYN: forward it with the client's ISN and (most of) its options."""
        mss, wscale, ts = syn_options(options)
        self.want_ws = wscale is not None
        self.want_ts = ts is not None
        self.syn_opts = build_tcp_options(mss or 1460, wscale, False,
                                          (ts[0], 0) if ts is not None else None)
        if ts is not None:
            self.ts_last = ts[0]
        self.win = win
        self._start(seq, now)

    def on_data(self, seq: int, ack: int, flags: int, win: int, payload: bytes,
                tsval: Optional[int], now: float) -> None:
        """A captured client segment with payload and/or FIN (or a bare RST/ACK)."""
        if flags & RST:
            # like the client's peer (RFC 5961), believe a RST only at or just past the next
            # expected byte: a blind RST with a random seq would end a live copy (seen in the lab)
            if self.state != SYN_WAIT and (seq - self.expect) & M32 >= RST_WINDOW:
                self.eng.counters["clt_rst_ignored"] += 1
                return
            self.last_act = now
            self.client_rst = True
            self._pump(now)
            return
        self.last_act = now
        if self.state == SYN_WAIT:
            if not payload and not flags & FIN:
                return
            self._fake_syn(seq, now)
        elif self.state == CLOSED:
            return
        if not self.faked:
            self.win = win
        if not payload and not flags & FIN:
            if self.hs_ack is None and flags & ACK and seq == ((self.isn + 1) & M32):
                self.hs_ack = ack
                self.rtt = max(0.0005, min(0.5, now - self.syn_at))
            return
        self._append(seq, flags, payload, ack, win, tsval, now)
        self._pump(now)

    def _fake_syn(self, first_seq: int, now: float) -> None:
        """No SYN was seen: fake one (seq = first seq - 1, window 65535, MSS -D, no TS/WS)."""
        eng = self.eng
        eng.counters["recon_for_no_syn"] += 1
        self.faked = True
        self.want_ts = self.want_ws = False
        self.syn_opts = build_tcp_options(eng.cfg.mss)
        self.win = 65535
        self._start((first_seq - 1) & M32, now)

    def _start(self, isn: int, now: float) -> None:
        eng = self.eng
        self.isn = isn
        self.expect = self.snd_una = (isn + 1) & M32
        self.snd_nxt = isn
        self.state = SYN_SENT
        self.syn_at = now
        eng.register(self)
        self._send_syn()
        self.rto = max(eng.cfg.rto_min, 1.0)
        self.rto_at = now + self.rto
        self.hs_at = now + eng.cfg.handshake_timeout
        eng.arm(self, self.rto_at)

    def _send_syn(self) -> None:
        eng = self.eng
        eng.counters["sent_syn"] += 1
        route = self.route
        eng.emit(self, build_packet(self.fake_ip, route.target_ip, eng.next_ident(),
                                    self.fake_port, route.target_port, self.isn, 0, SYN,
                                    self.win if not self.faked else 65535, self.syn_opts,
                                    b"", 0))

    def _append(self, seq: int, flags: int, payload: bytes, cack: int, win: int,
                tsval: Optional[int], now: float) -> None:
        """Put a client segment into the in-order buffer (trim overlaps, park gaps)."""
        eng = self.eng
        plen = len(payload)
        end = (seq + plen + (1 if flags & FIN else 0)) & M32
        expect = self.expect
        if not after(end, expect):
            eng.counters["clt_con_retrans"] += 1
            return
        if after(seq, expect):
            eng.counters["clt_gap"] += 1
            ooo = self.ooo
            if len(ooo) < OOO_MAX:
                # parked bytes count against both caps like in-order ones: a flood at random
                # seqs on a live tuple must not hold memory outside -m/--session-buffer-bytes
                old = ooo.get(seq)
                grow = plen - (len(old[DATA]) if old is not None else 0)
                ooo[seq] = [seq, flags, payload, cack, win, tsval, -1]
                self.buffered += grow
                eng.buffered_total += grow
                eng.check_buffer(self, now)
            return
        if seq != expect:
            cut = (expect - seq) & M32
            payload = payload[cut:]
            seq = expect
            plen = len(payload)
        seg_max = eng.seg_max
        if plen > seg_max:
            for off in range(0, plen - seg_max, seg_max):
                part = payload[off:off + seg_max]
                self.buf.append([(seq + off) & M32, 0, part, cack, win, tsval, payload_sum(part)])
            off = ((plen - 1) // seg_max) * seg_max
            seq, payload = (seq + off) & M32, payload[off:]
            plen = len(payload)
        self.buf.append([seq, flags & (FIN | PSH), payload, cack, win, tsval,
                         payload_sum(payload)])
        self.expect = end
        self.buffered += plen
        eng.buffered_total += plen
        if self.ooo:
            nxt = self.ooo.pop(end, None)
            if nxt is not None:
                n = len(nxt[DATA])          # unparked: counted again by the in-order append
                self.buffered -= n
                eng.buffered_total -= n
                self._append(nxt[0], nxt[1], nxt[2], nxt[3], nxt[4], nxt[5], now)
                return
        eng.check_buffer(self, now)

    # ------------------------------------------------------------------ sending

    def _pump(self, now: float) -> None:
        """Send buffered segments as far as state, window and pacing allow."""
        if self.state != ESTABLISHED:
            return
        eng = self.eng
        buf = self.buf
        no_wait = eng.cfg.no_wait
        while buf:
            seg = buf[0]
            flags = seg[FLAGS]
            plen = len(seg[DATA])
            if not no_wait and (
                    (flags & FIN and self.req_started) or (plen and seg[CACK] != self.req_cack)
            ) and self._hold(seg, now):
                break
            if plen:
                inflight = (self.snd_nxt - self.snd_una) & M32
                if inflight + plen > self.peer_win:
                    if self.peer_win == 0 or inflight == 0:
                        self._arm_rto(now)
                    break
            elif flags & FIN and self.snd_una != self.snd_nxt and not no_wait:
                break
            buf.popleft()
            self._send_seg(seg, now)
            if plen and (not self.req_started or seg[CACK] != self.req_cack):
                self.req_started = True
                self.req_cack = seg[CACK]
                self.req_rcv = self.rcv_nxt
                self.req_tsv = seg[TSV]
                self.req_at = now
                eng.counters["requests_sent"] += 1
                if not no_wait:
                    self.waiting_resp = True
                    self.resp_seen = False
                    self.eor_at = now + eng.cfg.resp_wait
                    eng.arm(self, self.eor_at)
            if flags & FIN:
                self.fin_sent = True
                eng.counters["sent_fin"] += 1
                self.fin_at = now + eng.cfg.close_wait
                eng.arm(self, self.fin_at)
        if not buf and self.client_rst and not (self.waiting_resp and self.req_started):
            self.finish(now, "released")

    def _send_seg(self, seg: Segment, now: float) -> None:
        eng = self.eng
        payload = seg[DATA]
        seq = seg[SEQ]
        flags = ACK | seg[FLAGS]
        opts = b""
        if self.ts_ok:
            tsv = seg[TSV]
            if tsv is None or after(self.ts_last, tsv):
                tsv = self.ts_last
            self.ts_last = tsv
            opts = ts_option(tsv, self.ts_recent)
        route = self.route
        win = 65535 if self.faked else seg[WIN]
        eng.emit(self, build_packet(self.fake_ip, route.target_ip, eng.next_ident(),
                                    self.fake_port, route.target_port, seq, self.rcv_nxt,
                                    flags, win, opts, payload, seg[PSUM]))
        self.ack_pending = False
        self.resp_unacked = 0
        self.ack_at = INF
        plen = len(payload)
        end = (seq + plen + (1 if flags & FIN else 0)) & M32
        if after(end, self.snd_nxt):
            self.snd_nxt = end
            self.unacked.append(seg)
        if plen:
            eng.counters["sent_content"] += 1
        if self.rto_at == INF:
            self._arm_rto(now)

    def send_ack(self, seq: Optional[int] = None) -> None:
        """A pure ACK (seq = snd_nxt unless given, e.g. a window probe)."""
        eng = self.eng
        route = self.route
        opts = ts_option(self.ts_last, self.ts_recent) if self.ts_ok else b""
        eng.counters["sent_ack"] += 1
        eng.emit(self, build_packet(self.fake_ip, route.target_ip, eng.next_ident(),
                                    self.fake_port, route.target_port,
                                    self.snd_nxt if seq is None else seq, self.rcv_nxt, ACK,
                                    self.win, opts, b"", 0))
        self.ack_pending = False
        self.resp_unacked = 0
        self.ack_at = INF

    # ------------------------------------------------------------------ target side

    def on_response(self, seq: int, ack: int, flags: int, win: int, plen: int, full: bool,
                    options: bytes, now: float) -> None:
        """One response header from intercept (the target's segment to our fake client)."""
        eng = self.eng
        c = eng.counters
        state = self.state
        if state == CLOSED:
            return
        if state != ESTABLISHED:
            if state == SYN_SENT:
                self._in_handshake(seq, ack, flags, win, options, now)
            else:
                c["resp_stale"] += 1
            return
        self.last_resp = self.last_act = now
        if flags & RST:
            c["resp_rst"] += 1
            self.target_reset = True
            self._peer_closed(now)
            return
        if flags & SYN:
            if flags & ACK and ack == ((self.isn + 1) & M32):
                self.send_ack()          # our third ACK was lost: the target repeats SYN-ACK
            return
        if self.ts_ok and options:
            tsr = eng.read_ts(options)
            if tsr is not None and not after(self.ts_recent, tsr):
                self.ts_recent = tsr
        new_data = False
        if plen:
            c["resp_cont"] += 1
            end = (seq + plen) & M32
            if after(end, self.rcv_nxt):
                self.rcv_nxt = end
                new_data = True
                self.last_resp_full = full
                if self.retrans_pending:
                    self.retrans_pending = False
                    c["retrans_succ"] += 1
            self.ack_pending = True
            self.resp_unacked += plen
            if self.resp_unacked >= 2 * self.full_len:
                eng.need_ack(self)          # like a quick ACK: keep bulk responses flowing
            elif self.ack_at == INF:
                self.ack_at = now + eng.cfg.ack_delay     # delayed ACK; a request may carry it
                eng.arm(self, self.ack_at)
        if flags & FIN:
            c["resp_fin"] += 1
            if ((seq + plen) & M32) == self.rcv_nxt and not self.peer_fin:
                self.rcv_nxt = (self.rcv_nxt + 1) & M32
                self.peer_fin = True
        if flags & ACK:
            self._on_ack(ack, win, plen, now)
        if new_data and self.waiting_resp:
            self.resp_seen = True
            if self.snd_una == self.snd_nxt and (not full or flags & PSH):
                self._response_ended(now, fast=True)
            else:
                self.eor_at = now + max(eng.cfg.eor_min, min(eng.cfg.eor_max, 2 * self.rtt))
                eng.arm(self, self.eor_at)
        if self.peer_fin:
            self._peer_closed(now)      # ends with a RST (or RST + new SYN) unless data waits
            if self.state == ESTABLISHED:
                self.send_ack()         # no ACK of the FIN right before a RST: one packet less
                self._pump(now)         # a FIN the client sent after this one may go now
            return
        self._pump(now)
