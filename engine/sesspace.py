"""Session handshake completion and response pacing (pure, no I/O).

``SessionPace`` is the part of ``engine.session.Session`` that decides when the copy of a
connection is established (the target's SYN-ACK, ``_in_handshake``) and when the next request
may go (``_hold``: the client's ACK field counts the response bytes the client had online;
``_response_ended``). The slots are declared on ``Session``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from engine.packets import ACK, RST, SYN
from engine.sessclose import CACK, ESTABLISHED, HALF, INF, M32, TSV, Segment, SessionEnd
from engine.sesspkt import rst_packet, syn_options

ONLINE_MS_MAX = 60_000      # a longer online response time (by timestamps) is not believed


class SessionPace(SessionEnd):
    """Mixin between ``SessionEnd`` and ``Session``: handshake completion and pacing."""

    if not TYPE_CHECKING:
        __slots__ = ()

    if TYPE_CHECKING:
        isn: int
        full_len: int
        last_resp_full: bool
        req_at: float
        req_cack: int
        req_tsv: Optional[int]
        ts_recent: int
        syn_at: float
        rtt: float

    def _in_handshake(self, seq: int, ack: int, flags: int, win: int, options: bytes,
                      now: float) -> None:
        eng = self.eng
        if flags & SYN and flags & ACK and ack == ((self.isn + 1) & M32):
            eng.counters["conns"] += 1
            mss, wscale, ts = syn_options(options)
            self.rcv_nxt = (seq + 1) & M32
            self.snd_una = self.snd_nxt = ack
            self.peer_wscale = min(wscale, 14) if (wscale is not None and self.want_ws) else 0
            self.peer_win = win
            self.ts_ok = self.want_ts and ts is not None
            if ts is not None and self.ts_ok:
                self.ts_recent = ts[0]
            if mss:
                self.full_len = mss - (12 if self.ts_ok else 0)
            self.state = ESTABLISHED
            self.hs_at = INF
            self.rto = eng.cfg.rto_min
            self.rto_at = INF
            self.last_resp = now
            self.send_ack()
            if self.hs_ack is None and not self.faked:
                # the client's third ACK was not captured (pure ACKs are filtered in the
                # kernel): the copy's own handshake time stands in for the online one
                self.rtt = max(0.0005, min(0.5, now - self.syn_at))
            if self.hs_ack is not None:
                # pacing starts from the client's view right after its handshake: a first
                # request sent only after a server greeting waits for the target's greeting
                self.req_cack = self.hs_ack
                self.req_rcv = self.rcv_nxt
                self.req_tsv = None
                self.req_at = now
                self.req_started = False
                self.waiting_resp = not eng.cfg.no_wait
                self.eor_at = now + eng.cfg.resp_wait
                eng.arm(self, self.eor_at)
            self._pump(now)
        elif flags & RST:
            eng.counters["resp_rst"] += 1
        elif flags & ACK and not flags & SYN:
            # a leftover connection on this tuple at the target: reset it, then SYN again
            eng.counters["reconnect"] += 1
            route = self.route
            eng.emit(self, rst_packet(self.fake_ip, route.target_ip, eng.next_ident(),
                                      self.fake_port, route.target_port, ack, 0))
            eng.counters["sent_rst"] += 1
            self._send_syn()

    def _hold(self, seg: Segment, now: float) -> bool:
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
        if self.req_rcv < 0:
            return self.waiting_resp
        want = (seg[CACK] - self.req_cack) & M32
        if want >= HALF:
            return self.waiting_resp
        if ((self.rcv_nxt - self.req_rcv) & M32) >= want:
            if self.waiting_resp:
                self._response_ended(now, fast=True)
            return False
        if self.waiting_resp:
            return True
        cfg = self.eng.cfg
        # the last segment full-size: more was coming, the target waits on us (ACK clock,
        # a loaded copier); short: it may have ended a shorter response
        lag = cfg.resp_wait if self.last_resp_full else cfg.eor_lag
        deadline = self.last_resp + lag
        tsv, req_tsv = seg[TSV], self.req_tsv
        if tsv is not None and req_tsv is not None:
            online_ms = (tsv - req_tsv) & M32
            if online_ms < ONLINE_MS_MAX:
                deadline = max(deadline, self.req_at + online_ms / 1000.0 + lag)
        if now < deadline:
            self.lag_at = deadline
            self.eng.arm(self, deadline)
            return True
        self.eng.counters["pacing_lag"] += 1
        return False

    def _response_ended(self, now: float, fast: bool) -> None:
        self.waiting_resp = False
        self.eor_at = INF
        self.eng.counters["pacing_fast" if fast else "pacing_timer"] += 1
