"""Memory caps: out-of-order client segments parked per session count against
``--session-buffer-bytes`` and ``-m`` like in-order buffers (shed + counted when over); ``-m``
by measured RSS (an input of ``Engine.check_memory``) also sheds a table of empty sessions."""

from __future__ import annotations

from engine.packets import ACK, FIN, PSH, RST, SYN, build_tcp_options
from engine.session import CLOSED, OOO_MAX, finish
from engine.session.admit import SESSION_OVERHEAD
from engine.session.shed import MEMORY_SETTLE
from engine.session.table import HEAP_SLACK, Engine
from tests.unit.session_transcript import (
    CISN,
    FAKE,
    OISN,
    TISN,
    cpkt,
    engine,
    established,
    rec,
    req,
    sends,
    syn_opts,
)

EXPECT = CISN + 1


def park(eng: Engine, n: int, size: int = 1400, *, sport: int = 40000, first: int = 0) -> None:
    """``n`` data segments at seqs far past the next expected byte (a random-seq flood)."""
    for i in range(first, first + n):
        seq = EXPECT + 100_000 + i * 2 * size
        eng.on_client_packet(cpkt(seq, OISN + 1, ACK, b"z" * size, sport=sport), 1.0 + i * 1e-4)


def park_until_shed(eng: Engine, limit: int = OOO_MAX) -> int:
    """Park segments one by one until a session is shed; how many it took."""
    for i in range(limit):
        park(eng, 1, first=i)
        if eng.counters["sessions_shed"]:
            return i + 1
    raise AssertionError("never shed")


def test_parked_bytes_are_counted_and_released_with_the_session() -> None:
    eng = engine(no_wait=True)
    established(eng)
    park(eng, 10)
    (s,) = eng.by_fake.values()
    assert len(s.ooo) == 10 and s.buffered == 14_000 and eng.buffered_total == 14_000
    assert eng.counters["clt_gap"] == 10
    park(eng, 10)                                   # the same segments again: not counted twice
    assert s.buffered == 14_000 and eng.buffered_total == 14_000
    finish(s, 2.0, "released")
    assert eng.buffered_total == 0 and not s.ooo


def test_reordered_segments_are_counted_once() -> None:
    eng = engine(no_wait=True)
    established(eng)
    eng.on_client_packet(req(EXPECT + 3, OISN + 1, b"def"), 1.0)
    assert eng.buffered_total == 3 and sends(eng) == []
    eng.on_client_packet(req(EXPECT, OISN + 1, b"abc"), 1.0)
    assert [p.payload for p in sends(eng)] == [b"abc", b"def"]
    assert eng.buffered_total == 6                  # sent, not yet acknowledged
    eng.on_response_record(rec(TISN + 1, EXPECT + 6, ACK), 1.1)
    assert eng.buffered_total == 0


def test_parked_flood_hits_the_session_buffer_cap() -> None:
    eng = engine(session_buffer_bytes=10_000)
    established(eng)
    assert park_until_shed(eng) == 8                # 8 x 1,400 = 11,200 > 10,000
    assert eng.counters["buffer_overflow"] == 1 and eng.counters["sessions_shed"] == 1
    assert eng.counters["memory_shed"] == 0
    assert eng.sessions_active == 0 and eng.buffered_total == 0


def test_parked_flood_hits_the_memory_cap_and_sheds_the_flooded_session() -> None:
    eng = engine(memory_limit=2 * SESSION_OVERHEAD + 50_000)
    established(eng)
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=40001), 0.5)      # a second, quiet session
    eng.taken()
    assert park_until_shed(eng) == 36               # 36 x 1,400 = 50,400 > 50,000
    assert eng.counters["memory_shed"] == 1 and eng.counters["sessions_shed"] == 1
    assert eng.sessions_active == 1 and eng.buffered_total == 0
    (quiet,) = [s for s in eng.by_fake.values() if s.fake_port == 40001]
    assert quiet.state != CLOSED


def test_parked_count_is_bounded_per_session() -> None:
    eng = engine(no_wait=True)
    established(eng)
    park(eng, OOO_MAX + 50, size=100)
    (s,) = eng.by_fake.values()
    assert len(s.ooo) == OOO_MAX and eng.buffered_total == OOO_MAX * 100


# ---------------------------------------------------------------- -m by measured RSS

LIMIT = 64 << 20


def syn_table(eng: Engine, n: int) -> None:
    """``n`` SYN-only sessions (a SYN flood), the one on port 2000 + i created at ``i`` s."""
    for i in range(n):
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=2000 + i), float(i))
    eng.taken()


def live_ports(eng: Engine) -> list:
    return sorted(s.fake_port for s in eng.by_fake.values() if s.state != CLOSED)


def test_rss_over_cap_sheds_oldest_empty_sessions_by_the_excess() -> None:
    eng = engine(memory_limit=LIMIT)
    syn_table(eng, 10)
    assert eng.buffered_total == 0
    assert eng.check_memory(LIMIT, 10.0).sessions == 0                   # at the cap: nothing
    assert eng.check_memory(LIMIT + 2 * SESSION_OVERHEAD + 1, 10.0).sessions == 3
    assert live_ports(eng) == list(range(2003, 2010))           # the 3 oldest went
    rsts = [p for p in sends(eng) if p.tcp.flags & RST]
    assert sorted(p.tcp.sport for p in rsts) == [2000, 2001, 2002]
    assert eng.counters["memory_shed"] == 3 and eng.counters["sessions_shed"] == 3
    assert eng.sessions_active == 7


def test_rss_shedding_takes_at_most_half_the_table_then_settles() -> None:
    eng = engine(memory_limit=LIMIT)
    syn_table(eng, 10)
    assert eng.check_memory(2 * LIMIT, 10.0).sessions == 5
    assert live_ports(eng) == list(range(2005, 2010))
    assert eng.check_memory(2 * LIMIT, 10.5).sessions == 0      # RSS lags: wait MEMORY_SETTLE
    assert eng.check_memory(2 * LIMIT, 10.0 + MEMORY_SETTLE).sessions == 2
    assert eng.counters["memory_shed"] == 7 and eng.sessions_active == 3
    assert eng.check_memory(LIMIT - 1, 100.0).sessions == 0


def test_rss_shedding_takes_buffering_sessions_before_old_empty_ones() -> None:
    eng = engine(memory_limit=LIMIT)
    syn_table(eng, 4)
    established(eng, win=0, now=5.0)                             # the newest session (port 40000)
    eng.on_client_packet(req(EXPECT, OISN + 1, b"x" * 1000), 6.0)   # held: zero window
    assert eng.buffered_total == 1000
    assert eng.check_memory(LIMIT + SESSION_OVERHEAD + 500, 7.0).sessions == 1
    assert live_ports(eng) == [2000, 2001, 2002, 2003]
    assert eng.buffered_total == 0
    # then the oldest (RSS still over by more than the 4,072 bytes the first shed freed)
    assert eng.check_memory(LIMIT + SESSION_OVERHEAD + 1000 + 1, 7.0 + MEMORY_SETTLE).sessions == 1
    assert live_ports(eng) == [2001, 2002, 2003]


def test_rss_that_stays_up_after_a_shed_does_not_shed_the_table_again_and_again() -> None:
    # CPython keeps freed memory for reuse: RSS does not come down after a shed. The excess
    # was covered by the shed; shedding again every MEMORY_SETTLE s would empty the table
    # (before the fix: 3 more sessions shed at every check below)
    eng = engine(memory_limit=LIMIT)
    syn_table(eng, 10)
    rss = LIMIT + 2 * SESSION_OVERHEAD + 1
    assert eng.check_memory(rss, 10.0).sessions == 3
    for i in range(1, 4):
        assert eng.check_memory(rss, 10.0 + i * MEMORY_SETTLE).sessions == 0
    assert eng.sessions_active == 7 and not eng.rss_over
    # the freed room is used again by new sessions; once the table is back where RSS was over,
    # it is over again: new sessions refused, and shed
    for i in range(3):
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=3000 + i), 30.0)
    assert eng.sessions_active == 10
    assert eng.check_memory(rss, 31.0).sessions == 3 and eng.rss_over
    # RSS really back under the cap: the credit is forgotten, nothing over
    assert eng.check_memory(LIMIT - 1, 40.0).sessions == 0 and not eng.rss_over
    assert eng.mem_anchor == -1


def test_rss_over_the_cap_refuses_new_sessions_until_a_check_finds_it_under() -> None:
    # the estimate (3 kB per session) is below what a session really costs: admission alone
    # would go on until the estimate reaches -m, far past it in RSS (a 100,000-SYN flood with
    # -m 256 reached 334 MB). While the last RSS check was over, new sessions are refused.
    eng = engine(memory_limit=LIMIT, max_sessions=100)
    syn_table(eng, 4)
    assert eng.check_memory(LIMIT + 1, 4.0).sessions == 1 and eng.rss_over
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=3000), 4.1)
    assert eng.sessions_active == 3 and eng.counters["memory_shed"] == 2    # 1 shed, 1 refused
    # RSS the same: the shed covered it (the allocator keeps the memory for the next sessions)
    assert eng.check_memory(LIMIT + 1, 4.5).sessions == 0 and not eng.rss_over
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=3001), 4.6)
    assert eng.sessions_active == 4 and eng.counters["memory_shed"] == 2


def test_empty_table_is_not_shed() -> None:
    eng = engine(memory_limit=LIMIT)
    assert eng.check_memory(10 * LIMIT, 0.0).sessions == 0 and eng.counters["memory_shed"] == 0


def test_estimate_refuses_new_sessions_over_the_memory_cap() -> None:
    eng = engine(memory_limit=3 * SESSION_OVERHEAD, max_sessions=100)
    syn_table(eng, 5)
    assert eng.sessions_active == 3 and eng.counters["memory_shed"] == 2
    assert eng.counters["table_full"] == 0 and eng.counters["sessions_shed"] == 0


def test_closed_sessions_do_not_pile_up_behind_superseded_timers() -> None:
    """A session that idles (its keep-alive deadline goes into the timer heap) and then
    closes leaves that far entry behind; thousands of them used to keep every closed session
    in memory until the idle timeout (the P2 soak: tcpcopy's RSS grew for 240 s at ~95 new
    sessions/s). The heap stays within two entries per live session + HEAP_SLACK."""
    eng = engine(keepalive_timeout=240, session_timeout=120)
    now, open_ = 0.0, []
    for i in range(4 * HEAP_SLACK):
        sport, cisn, dst = 20000 + i, 1000 + i * 7, FAKE[i % 2]
        opts = build_tcp_options(1460, None, True, (777, 111))
        eng.on_client_packet(cpkt(cisn, 0, SYN, opts=syn_opts(), sport=sport), now)
        eng.on_client_packet(cpkt(cisn + 1, OISN + 1, ACK, sport=sport), now + 0.001)
        eng.on_response_record(rec(TISN, cisn + 1, SYN | ACK, opts=opts, dport=sport, dst=dst),
                               now + 0.002)
        eng.on_client_packet(req(cisn + 1, OISN + 1, b"GET"), now + 0.003)
        eng.on_response_record(rec(TISN + 1, cisn + 4, ACK | PSH, 10, dport=sport, dst=dst),
                               now + 0.004)
        open_.append((i + 50, cisn, sport, dst))
        while open_ and open_[0][0] <= i:         # 50 sessions later: FIN both ways
            _, c, sp, d = open_.pop(0)
            eng.on_client_packet(cpkt(c + 4, OISN + 11, ACK | FIN, sport=sp), now)
            eng.on_response_record(rec(TISN + 11, c + 5, ACK | FIN, dport=sp, dst=d), now)
        now += 0.01
        while (d := eng.next_deadline()) is not None and d <= now:
            eng.on_timer(d)
        eng.taken()
        assert len(eng.heap) <= 2 * len(eng.by_fake) + HEAP_SLACK + 1, (i, len(eng.heap))
    live = {id(s) for s in eng.by_fake.values()}
    held = {id(e[2]) for e in eng.heap} - live
    assert len(held) <= HEAP_SLACK, len(held)       # destroyed sessions still referenced
    assert eng.counters["sessions_released"] > 3 * HEAP_SLACK
