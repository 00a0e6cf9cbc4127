"""What a session sends to the target: SYN, data segments, pure ACKs, RST (pure).

Each packet is built with both checksums and handed to the table (``Host.emit``), which turns it
into a ``SendPacket`` action; ``arm_rto`` (re)starts the retransmission timer.
"""

from __future__ import annotations

from typing import Optional

from engine.packets import ACK, FIN, SYN
from engine.session.packets import build_packet, rst_packet, ts_option
from engine.session.state import (
    DATA,
    FLAGS,
    INF,
    M32,
    PSUM,
    SEQ,
    TSV,
    WIN,
    Segment,
    Session,
    after,
)


def send_syn(s: Session) -> None:
    eng = s.eng
    eng.counters["sent_syn"] += 1
    route = s.route
    eng.emit(s, build_packet(s.fake_ip, route.target_ip, eng.next_ident(),
                             s.fake_port, route.target_port, s.isn, 0, SYN,
                             s.win if not s.faked else 65535, s.syn_opts,
                             b"", 0))


def send_seg(s: Session, seg: Segment, now: float) -> None:
    eng = s.eng
    payload = seg[DATA]
    seq = seg[SEQ]
    flags = ACK | seg[FLAGS]
    opts = b""
    if s.ts_ok:
        tsv = seg[TSV]
        if tsv is None or after(s.ts_last, tsv):
            tsv = s.ts_last
        s.ts_last = tsv
        opts = ts_option(tsv, s.ts_recent)
    route = s.route
    win = 65535 if s.faked else seg[WIN]
    eng.emit(s, build_packet(s.fake_ip, route.target_ip, eng.next_ident(),
                             s.fake_port, route.target_port, seq, s.rcv_nxt,
                             flags, win, opts, payload, seg[PSUM]))
    s.ack_pending = False
    s.resp_unacked = 0
    s.ack_at = INF
    plen = len(payload)
    end = (seq + plen + (1 if flags & FIN else 0)) & M32
    if after(end, s.snd_nxt):
        s.snd_nxt = end
        s.unacked.append(seg)
    if plen:
        eng.counters["sent_content"] += 1
    if s.rto_at == INF:
        arm_rto(s, now)


def send_ack(s: Session, seq: Optional[int] = None) -> None:
    """A pure ACK (seq = snd_nxt unless given, e.g. a window probe)."""
    eng = s.eng
    route = s.route
    opts = ts_option(s.ts_last, s.ts_recent) if s.ts_ok else b""
    eng.counters["sent_ack"] += 1
    eng.emit(s, build_packet(s.fake_ip, route.target_ip, eng.next_ident(),
                             s.fake_port, route.target_port,
                             s.snd_nxt if seq is None else seq, s.rcv_nxt, ACK,
                             s.win, opts, b"", 0))
    s.ack_pending = False
    s.resp_unacked = 0
    s.ack_at = INF


def arm_rto(s: Session, now: float) -> None:
    s.rto_at = now + s.rto
    s.eng.arm(s, s.rto_at)


def send_rst(s: Session) -> None:
    eng = s.eng
    route = s.route
    eng.counters["sent_rst"] += 1
    eng.emit(s, rst_packet(s.fake_ip, route.target_ip, eng.next_ident(), s.fake_port,
                           route.target_port, s.snd_nxt, s.rcv_nxt))
