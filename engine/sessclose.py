"""Session end, reconnects, retransmission, ACK bookkeeping and timers (pure, no I/O).

``SessionEnd`` is the half of ``engine.session.Session`` that runs when the target ACKs,
closes or stays silent: ``_on_ack`` (window, ACK progress, fast retransmit), ``_retransmit``,
``_peer_closed``/``_reconstruct`` (reconnect while client data waits, study §3.9), ``finish``
(RST the target, linger TIME_WAIT-like), ``on_timer`` and ``due`` (the session's next deadline).
The shared constants live here so both halves can use them without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Deque, Dict, List, Optional

from engine.packets import FIN, build_tcp_options
from engine.sesspkt import payload_sum, rst_packet

if TYPE_CHECKING:
    from engine.sesscfg import Route
    from engine.sesstable import Engine

M32 = 0xFFFFFFFF
HALF = 1 << 31
INF = float("inf")

SYN_WAIT, SYN_SENT, ESTABLISHED, CLOSED = 0, 1, 2, 3

# a buffered client segment: [seq, flags, payload, client_ack, window, tsval, payload_sum]
SEQ, FLAGS, DATA, CACK, WIN, TSV, PSUM = range(7)
Segment = List  # list of the fields above (mutable: retransmission trims it)


def after(a: int, b: int) -> bool:
    return 0 < ((a - b) & M32) < HALF


class SessionEnd:
    """Mixin: the closing/timer half of ``Session`` (the slots are declared there)."""

    if not TYPE_CHECKING:       # for mypy the attributes are declared below (slots: Session)
        __slots__ = ()

    if TYPE_CHECKING:
        eng: Engine
        ckey: int
        fkey: int
        timer_at: float
        route: Route
        state: int
        buf: Deque[Segment]
        unacked: Deque[Segment]
        ooo: Dict[int, Segment]
        buffered: int
        fake_ip: int
        fake_port: int
        faked: bool
        ack_at: float
        ack_pending: bool
        dup_acks: int
        eor_at: float
        fin_at: float
        fin_sent: bool
        hs_ack: Optional[int]
        hs_at: float
        lag_at: float
        last_act: float
        last_resp: float
        peer_fin: bool
        peer_win: int
        peer_wscale: int
        rcv_nxt: int
        req_rcv: int
        req_started: bool
        retrans_pending: bool
        rto: float
        rto_at: float
        snd_nxt: int
        snd_una: int
        syn_opts: bytes
        target_reset: bool
        ts_ok: bool
        tw_at: float
        waiting_resp: bool
        want_ts: bool
        want_ws: bool

        def _pump(self, now: float) -> None: ...
        def _send_seg(self, seg: Segment, now: float) -> None: ...
        def _send_syn(self) -> None: ...
        def _start(self, isn: int, now: float) -> None: ...
        def _response_ended(self, now: float, fast: bool) -> None: ...
        def send_ack(self, seq: Optional[int] = None) -> None: ...

    def _arm_rto(self, now: float) -> None:
        self.rto_at = now + self.rto
        self.eng.arm(self, self.rto_at)

    def _retransmit(self, now: float) -> None:
        """Resend the first unacknowledged segment (trimmed to what is still unacked)."""
        eng = self.eng
        while self.unacked:
            seg = self.unacked[0]
            end = (seg[SEQ] + len(seg[DATA]) + (1 if seg[FLAGS] & FIN else 0)) & M32
            if after(end, self.snd_una):
                break
            self.unacked.popleft()
        if not self.unacked:
            return
        seg = self.unacked[0]
        if seg[SEQ] != self.snd_una and after(self.snd_una, seg[SEQ]):
            cut = (self.snd_una - seg[SEQ]) & M32
            data = seg[DATA][cut:]
            seg[SEQ], seg[DATA], seg[PSUM] = self.snd_una, data, payload_sum(data)
        eng.counters["retransmit"] += 1
        self.retrans_pending = True
        snd_nxt = self.snd_nxt
        self._send_seg(seg, now)
        self.snd_nxt = snd_nxt

    def _on_ack(self, ack: int, win: int, plen: int, now: float) -> None:
        self.peer_win = win << self.peer_wscale
        if after(ack, self.snd_una):
            if after(ack, self.snd_nxt):
                self.snd_nxt = ack
            self.snd_una = ack
            self.dup_acks = 0
            self.rto = self.eng.cfg.rto_min
            self._release_acked()
            if self.unacked:
                self._arm_rto(now)
            else:
                self.rto_at = INF
        elif ack == self.snd_una and not plen and self.unacked:
            self.dup_acks += 1
            if self.dup_acks == 3:
                self._retransmit(now)
        if self.peer_win == 0 and self.buf:
            self.eng.counters["win_zero"] += 1
            self._arm_rto(now)

    def _release_acked(self) -> None:
        una = self.snd_una
        unacked = self.unacked
        eng = self.eng
        while unacked:
            seg = unacked[0]
            end = (seg[SEQ] + len(seg[DATA]) + (1 if seg[FLAGS] & FIN else 0)) & M32
            if after(end, una):
                break
            unacked.popleft()
            n = len(seg[DATA])
            self.buffered -= n
            eng.buffered_total -= n

    def _peer_closed(self, now: float) -> None:
        """Target FIN/RST: reconnect if client data is still waiting, else end the session."""
        has_data = any(seg[DATA] for seg in self.buf)
        if has_data:
            self.eng.counters["reconnect"] += 1
            self._reconstruct(now)
        elif self.fin_sent or not self.buf:
            self.finish(now, "released")

    def _reconstruct(self, now: float) -> None:
        """Reset the target connection and start again with a faked SYN before the unsent data."""
        eng = self.eng
        if not self.target_reset:
            self._send_rst()
        first = self.buf[0][SEQ]
        for seg in self.unacked:
            self.buffered -= len(seg[DATA])
            eng.buffered_total -= len(seg[DATA])
        self.unacked.clear()
        self.peer_fin = self.fin_sent = self.target_reset = False
        self.waiting_resp = self.req_started = False
        self.ts_ok = False
        self.faked = True
        self.syn_opts = build_tcp_options(eng.cfg.mss)
        self.want_ts = self.want_ws = False
        self.hs_ack = None
        self.req_rcv = -1               # the new connection has a new ISN: no byte count yet
        self._start((first - 1) & M32, now)

    def _send_rst(self) -> None:
        eng = self.eng
        route = self.route
        eng.counters["sent_rst"] += 1
        eng.emit(self, rst_packet(self.fake_ip, route.target_ip, eng.next_ident(), self.fake_port,
                                  route.target_port, self.snd_nxt, self.rcv_nxt))

    # ------------------------------------------------------------------ end and timers

    def finish(self, now: float, reason: str) -> None:
        """End the session: RST the target (frees its socket), then linger (TIME_WAIT-like)."""
        if self.state == CLOSED:
            return
        eng = self.eng
        if self.state != SYN_WAIT and not self.target_reset:
            self._send_rst()
        self.state = CLOSED
        eng.counters["sessions_time_wait"] += 1
        if reason != "released":
            eng.counters[reason] += 1
        eng.drop_buffers(self)
        self.hs_at = self.rto_at = self.eor_at = self.fin_at = self.ack_at = self.lag_at = INF
        self.tw_at = now + eng.cfg.time_wait
        eng.arm(self, self.tw_at)

    def on_timer(self, now: float) -> None:
        eng = self.eng
        cfg = eng.cfg
        if self.state == CLOSED:
            if now >= self.tw_at:
                eng.destroy(self)
            else:
                eng.arm(self, self.tw_at)
            return
        if now >= self.hs_at:
            self.finish(now, "sessions_no_synack")
            return
        if now >= self.fin_at:
            self.finish(now, "released")
            return
        if now >= self.rto_at:
            self.rto_at = INF
            if self.state == SYN_SENT:
                self._send_syn()
                self.rto = min(self.rto * 2, cfg.rto_max)
                self._arm_rto(now)
            elif self.unacked:
                self._retransmit(now)
                self.rto = min(self.rto * 2, cfg.rto_max)
                self._arm_rto(now)
            elif self.buf and self.peer_win == 0:
                self.send_ack((self.snd_una - 1) & M32)     # zero-window probe
                self.rto = min(self.rto * 2, cfg.rto_max)
                self._arm_rto(now)
            else:
                self._pump(now)
        if now >= self.ack_at:
            self.ack_at = INF
            if self.ack_pending and self.state == ESTABLISHED:
                self.send_ack()
        if now >= self.eor_at:
            if self.waiting_resp:
                self._response_ended(now, fast=False)
                self._pump(now)
                if self.ack_pending and self.state == ESTABLISHED:
                    self.send_ack()
            self.eor_at = INF
        if now >= self.lag_at:
            self.lag_at = INF
            if self.state == ESTABLISHED:
                self._pump(now)         # a target response shorter than online's: go on
        if self.state == CLOSED:
            return
        busy = bool(self.buf or self.unacked) or self.state != ESTABLISHED
        if busy and now - self.last_resp >= cfg.session_timeout:
            self.finish(now, "sessions_timeout")
            return
        if now - self.last_act >= cfg.keepalive_timeout:
            self.finish(now, "sessions_timeout")
            return
        eng.arm(self, self.due())

    def due(self) -> float:
        """The earliest time ``on_timer`` has anything to do (before it, a call only re-arms)."""
        if self.state == CLOSED:
            return self.tw_at
        cfg = self.eng.cfg
        busy = bool(self.buf or self.unacked) or self.state != ESTABLISHED
        return min(self.hs_at, self.fin_at, self.rto_at, self.eor_at, self.ack_at, self.lag_at,
                   self.last_act + cfg.keepalive_timeout,
                   (self.last_resp + cfg.session_timeout) if busy else INF)
