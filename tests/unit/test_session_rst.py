"""Client RSTs (regression for b2007f0): only a RST at or just past the next expected client byte
(< ``RST_WINDOW`` = 64 KiB) ends a copy session; a blind RST with any other seq is ignored and
counted as ``clt_rst_ignored``, like the client's real peer does (RFC 5961)."""

from __future__ import annotations

import pytest

from engine.packets import ACK, RST
from engine.session import RST_WINDOW
from tests.unit.session_transcript import CISN, OISN, cpkt, engine, established, req, sends

EXPECT = CISN + 1                       # the next client byte after the handshake


@pytest.mark.parametrize("seq", [
    EXPECT + RST_WINDOW,                # just beyond the window
    EXPECT + (1 << 31),                 # far away
    EXPECT - 1,                         # just before the next byte (already sent)
    (EXPECT - 50_000) & 0xFFFFFFFF,     # in the past
])
def test_blind_rst_is_ignored_and_counted(seq: int) -> None:
    eng = engine(no_wait=True)
    established(eng)
    eng.on_client_packet(cpkt(seq, OISN + 1, RST | ACK), 1.0)
    assert sends(eng) == []                                     # nothing sent to the target
    assert eng.counters["clt_rst_ignored"] == 1 and eng.sessions_active == 1
    # the session still copies: the next request goes out with the original seq
    eng.on_client_packet(req(EXPECT, OISN + 1, b"abc"), 1.1)
    (data,) = sends(eng)
    assert data.tcp.seq == EXPECT and data.payload == b"abc"


@pytest.mark.parametrize("offset", [0, 1, RST_WINDOW - 1])
def test_in_window_rst_ends_session_and_is_sent_on(offset: int) -> None:
    eng = engine()
    established(eng)
    eng.on_client_packet(cpkt(EXPECT + offset, OISN + 1, RST | ACK), 1.0)
    (rst,) = sends(eng)
    assert rst.tcp.flags & RST and rst.tcp.seq == EXPECT        # at what the target expects
    assert eng.counters["clt_rst_ignored"] == 0 and eng.sessions_active == 0


def test_rst_storm_neither_ends_nor_keeps_alive_a_live_session() -> None:
    """Many blind RSTs on a live tuple: all ignored; they do not refresh the idle timer either,
    and a real in-window RST afterwards still ends the session."""
    eng = engine(no_wait=True, keepalive_timeout=20.0)
    established(eng)
    eng.on_client_packet(req(EXPECT, OISN + 1, b"abc"), 0.5)
    assert len(sends(eng)) == 1
    nxt = EXPECT + 3
    for i in range(200):
        seq = (nxt + RST_WINDOW + i * 7_919_993) & 0xFFFFFFFF
        if (seq - nxt) & 0xFFFFFFFF < RST_WINDOW:
            continue
        eng.on_client_packet(cpkt(seq, OISN + 1, RST | ACK), 1.0 + i * 0.05)
    assert sends(eng) == [] and eng.sessions_active == 1
    assert eng.counters["clt_rst_ignored"] >= 190
    eng.on_client_packet(cpkt(nxt, OISN + 1, RST | ACK), 12.0)
    rst = [p for p in sends(eng) if p.tcp.flags & RST]
    assert len(rst) == 1 and eng.sessions_active == 0


def test_blind_rsts_do_not_refresh_the_idle_timeout() -> None:
    eng = engine(session_timeout=10, keepalive_timeout=20)
    established(eng)
    for t in (5.0, 10.0, 15.0, 19.0):
        eng.on_client_packet(cpkt(EXPECT + 2 * RST_WINDOW, OISN + 1, RST | ACK), t)
    t = 0.0
    while eng.sessions_active and t < 100:
        d = eng.next_deadline()
        assert d is not None
        t = d
        eng.on_timer(t)
    assert eng.counters["sessions_timeout"] == 1 and 19 <= t <= 21
    assert eng.counters["clt_rst_ignored"] == 4
