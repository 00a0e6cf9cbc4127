"""Response records from intercept, one channel read at a time (pure; functions over the
session table).

A record is the target's segment to one of our fake clients, cut after its headers by
intercept. Each is checked here (``engine.header.record_fields``; a bad one is counted as
``channel_malformed``), matched to its session by the fake tuple and the target's address
(``resp_unknown`` when none), and handed to ``engine.session.target.on_response``.

A response of several segments comes as as many records, mostly side by side in one read:
nginx writes a static file's header, then its body; a bulk response is a run of full-size
segments. **Consecutive records that continue one another are handed over joined**, as one
segment: the same session, live, data starting at the session's next expected byte or where
the previous one ended, the same ACK, no SYN or RST, nothing after a FIN. The joined segment
has the first one's sequence number, all their bytes, the last one's window, timestamp and
size, all their flags, and ``ended`` when an earlier one was short: the session would have
seen the response end there. What the session then does (its receive point, the ACK it owes,
the request it sends next) is what it did with each in turn; only the work in between is
saved (a pump that could not send yet, a pacing hold computed and armed again). One
difference: a request that may go partway through (its client sent it before the whole
response had come, or its byte count is unusable) goes after the joined segment and
acknowledges all of it, where one record at a time sent it after the record that let it go
and then a pure ACK for the rest; the packets leave after the read either way. Every record
still counts in ``resp`` and ``resp_cont``.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, Set

from engine.header import PacketError, record_fields
from engine.packets import FIN, RST, SYN
from engine.session.stall import Stalling, answered
from engine.session.state import CLOSED, ESTABLISHED, M32, Session
from engine.session.target import on_response


class Receiving(Stalling, Protocol):
    """What taking response records uses of the session table."""

    full_sizes: Set[int]      # IP total lengths that mean a full-size segment (MTUs)


def on_records(t: Receiving, recs: Sequence[bytes], now: float) -> None:
    """The records of one channel read, in order."""
    c = t.counters
    by_fake = t.by_fake
    full_sizes = t.full_sizes
    # the joined segment while more may join it (js: its session, None when there is none)
    js: Optional[Session] = None
    j_seq = j_ack = j_flags = j_win = j_plen = 0
    j_full = j_ended = False
    j_opts = b""
    last = recs[-1] if recs else None
    for rec in recs:
        try:
            hv = record_fields(rec)
        except PacketError:
            t.drop("channel_malformed")
            continue
        c["resp"] += 1
        (vihl, _tos, tot, _id, _frag, _ttl, _proto, _ipsum, saddr, daddr, sport, dport, seq, ack,
         doffb, flags, win, _tsum, _urg) = hv
        doff = (doffb >> 4) << 2
        plen = tot - ((vihl & 15) << 2) - doff
        s = by_fake.get((daddr << 16) | dport)
        if s is None or s.route.target_port != sport or s.route.target_ip != saddr:
            c["resp_unknown"] += 1
            continue
        options = rec[40:20 + min(doff, 44)] if doff > 20 else b""
        full = plen >= s.full_len or tot in full_sizes
        if js is not None:
            if js is s and plen and not flags & (SYN | RST) and ack == j_ack and \
                    not j_flags & FIN and seq == (j_seq + j_plen) & M32:
                c["resp_cont"] += 1      # on_response counts the joined segment once
                j_ended = j_ended or not j_full
                j_flags |= flags
                j_win, j_plen, j_full, j_opts = win, j_plen + plen, full, options
                continue
            _deliver(t, js, j_seq, j_ack, j_flags, j_win, j_plen, j_full, j_opts, now, j_ended)
            js = None
        if plen and rec is not last and not flags & (SYN | RST) and s.state == ESTABLISHED \
                and seq == s.rcv_nxt:
            js, j_seq, j_ack, j_flags, j_win, j_plen = s, seq, ack, flags, win, plen
            j_full, j_opts, j_ended = full, options, False
            continue
        t.heard_at = now             # (_deliver, inlined: this is per record)
        if (plen or flags & (FIN | RST)) and s.state != CLOSED:
            answered(t, now)
        on_response(s, seq, ack, flags, win, plen, full, options, now)
    if js is not None:
        _deliver(t, js, j_seq, j_ack, j_flags, j_win, j_plen, j_full, j_opts, now, j_ended)


def _deliver(t: Receiving, s: Session, seq: int, ack: int, flags: int, win: int, plen: int,
             full: bool, options: bytes, now: float, ended: bool) -> None:
    """Hand one (joined) segment over to its session."""
    t.heard_at = now                 # intercept and the target's kernel are alive
    if (plen or flags & (FIN | RST)) and s.state != CLOSED:
        answered(t, now)             # the target answers (engine.session.stall)
    on_response(s, seq, ack, flags, win, plen, full, options, now, ended)


__all__ = ["Receiving", "on_records"]
