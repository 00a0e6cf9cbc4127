"""A captured client segment into its sessions when a selection is configured (pure).

The segment goes through the connection's ``ClientSelect`` (one per client connection, shared
by its replicas), whose held bytes are counted against the first replica's buffer caps; the
copied-space segments it gives back go to every replica's emulator (``client.on_data``). A
connection that ends with nothing selected is finished as ``sessions_unselected``: the target
never saw it.
"""

from __future__ import annotations

from typing import List, Optional

from engine.session.client import on_data
from engine.session.selected import ClientSelect
from engine.session.state import Host, Session
from engine.session.teardown import finish


def feed_selected(eng: Host, sessions: List[Session], seq: int, ack: int, flags: int, win: int,
                  payload: bytes, tsval: Optional[int], now: float) -> None:
    first = sessions[0]
    sel = first.sel
    if sel is None:                 # no SYN was seen: the stream starts here
        selection = eng.cfg.selection
        assert selection is not None
        sel = ClientSelect(selection, seq, eng.counters)
        for s in sessions:
            s.sel = sel
    segments = sel.feed(seq, ack, flags, payload)
    held = sel.held
    if held != sel.accounted:
        first.buffered += held - sel.accounted
        eng.buffered_total += held - sel.accounted
        sel.accounted = held
        eng.check_buffer(first, now)
    if sel.ended and not sel.selected:
        for s in sessions:
            finish(s, now, "sessions_unselected")
        return
    for cseq, cflags, data, cack in segments:
        for s in sessions:
            on_data(s, cseq, cack, cflags, win, data, tsval, now)
