"""The state of one emulated session, and what it needs from its table (pure, no I/O).

``Session`` holds every field of one copied connection in one slotted object (the hot path
reads them as plain attributes); the behaviour is composed from the sibling modules, each a
set of functions over a ``Session``, layered so that each imports only the ones before it:

    state  <-  output (packets to the target)  <-  teardown (RST + linger)
           <-  pacing (when the next request may go)  <-  client (captured segments, sending)
           <-  target (response records, ACKs, retransmission, reconnects)  <-  timers

``Host`` is the table's side (``engine.session.table.Engine`` implements it): counters, config,
the action outbox (``emit``/``register``), the timer heap (``arm``), the memory accounting.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Protocol

from engine.session.config import HALF, M32, Route, SessionConfig
from engine.session.selected import ClientSelect

INF = float("inf")

SYN_WAIT, SYN_SENT, ESTABLISHED, CLOSED = 0, 1, 2, 3

# a buffered client segment: [seq, flags, payload, client_ack, window, tsval, payload_sum,
# captured_at (the capture time of the client segment it came from)]
SEQ, FLAGS, DATA, CACK, WIN, TSV, PSUM, CAP = range(8)
Segment = List  # list of the fields above (mutable: retransmission trims it)

ONLINE_MS_MAX = 60_000      # a longer online response time (by timestamps) is not believed


def after(a: int, b: int) -> bool:
    """a is strictly after b in sequence space (mod 2**32)."""
    return 0 < ((a - b) & M32) < HALF


class Host(Protocol):
    """What a session uses of its table (``engine.session.table.Engine``)."""

    cfg: SessionConfig
    counters: Dict[str, int]
    buffered_total: int
    seg_max: int
    down_since: float           # when the intercept channel went down while holding, else INF

    def emit(self, sess: Session, packet: bytes) -> None: ...
    def register(self, sess: Session) -> None: ...
    def next_ident(self) -> int: ...
    def note_latency(self, seconds: float) -> None: ...
    def note_delay(self, seconds: float) -> None: ...
    def asked(self, now: float) -> None: ...
    def arm(self, sess: Session, when: float) -> None: ...
    def need_ack(self, sess: Session) -> None: ...
    def read_ts(self, options: bytes) -> Optional[int]: ...
    def check_buffer(self, sess: Session, now: float) -> None: ...
    def drop_buffers(self, sess: Session) -> None: ...
    def destroy(self, sess: Session) -> None: ...


class Session:
    """State of one copied connection (one replica of one client connection).

    Groups: identity (``eng ckey fkey route fake_ip fake_port``), sequence space (``isn
    snd_nxt snd_una rcv_nxt expect peer_win peer_wscale win ts_* want_* syn_opts faked``),
    client data (``buf unacked ooo buffered``), pacing (``req_* waiting_resp resp_seen
    last_resp_full hs_ack rtt full_len``), closing (``client_rst fin_sent peer_fin
    target_reset``), deadlines (``*_at``; ``timer_at`` is the one in the table's heap)."""

    __slots__ = (
        "ack_at", "ack_pending", "buf", "buffered", "ckey", "client_rst", "created", "dup_acks",
        "eng", "eor_at", "expect", "fake_ip", "fake_port", "faked", "fin_at", "fin_sent", "fkey",
        "full_len", "hs_ack", "hs_at", "isn", "lag_at", "last_act", "last_resp", "last_resp_full",
        "ooo", "peer_fin", "peer_win", "peer_wscale", "rcv_nxt", "req_at", "req_cack", "req_rcv",
        "req_started", "req_tsv", "resp_seen", "resp_unacked", "retrans_pending", "route", "rto",
        "rto_at", "rtt", "sel", "send_fails", "snd_nxt", "snd_una", "state", "syn_at",
        "syn_held", "syn_opts", "target_reset",
        "timer_at", "ts_last", "ts_ok", "ts_recent", "tw_at", "unacked", "waiting_resp",
        "want_ts", "want_ws", "win",
    )

    def __init__(self, eng: Host, ckey: int, fkey: int, route: Route, now: float) -> None:
        self.eng, self.ckey, self.fkey, self.route = eng, ckey, fkey, route
        self.fake_ip, self.fake_port = fkey >> 16, fkey & 0xFFFF
        self.state = SYN_WAIT
        self.faked = False
        # per-request selection (``engine.session.selected``; shared by the replicas), and
        # a client SYN held back until the first selected byte
        self.sel: Optional[ClientSelect] = None
        self.syn_held = False
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
        self.send_fails = 0          # sends refused by the local stack since the last progress
        self.ack_at = INF
        self.rtt = eng.cfg.rtt_default
        self.rto = eng.cfg.rto_min
        self.full_len = 1448
        self.created = self.last_act = self.last_resp = self.syn_at = now
        self.hs_at = self.rto_at = self.eor_at = self.tw_at = self.fin_at = self.lag_at = INF
        self.timer_at = INF
