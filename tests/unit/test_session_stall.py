"""A target that stops answering (`engine.session.stall`, tcpcopy --target-stall-s): new sessions
refused and held client bytes shed while it is silent, never for a target that answers, a slow
request alone, or an intercept outage; the first answer ends it."""

from __future__ import annotations

from typing import List, Optional

import pytest

from engine.options import OptionsError, parse_tcpcopy_args
from engine.options.tcpcopy import DEFAULT_TARGET_STALL_S
from engine.packets import ACK, PSH, RST, SYN
from engine.session import CLOSED, INF, Session
from engine.session.config import SESSION_OVERHEAD
from engine.session.stall import MIN_ASKS, PROBE_INTERVAL, deaf_after, watching
from engine.tcpcopy.setup import session_config
from tests.unit.fake_clock import FakeClock
from tests.unit.session_transcript import (
    CISN,
    OISN,
    TISN,
    Transcript,
    cpkt,
    engine,
    rec,
    sends,
)

STALL = 2.0
BODY = b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"


def open_session(eng: Transcript, sport: int, now: float) -> Session:
    """Client SYN and third ACK, the target's SYN-ACK (its kernel: not an answer), then the
    client's first request, sent to the target (an ask)."""
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=sport), now)
    s = list(eng.by_fake.values())[-1]
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK, sport=sport), now)
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, dst=s.fake_ip, dport=s.fake_port),
                           now)
    request(eng, sport, 0, now)
    return s


def request(eng: Transcript, sport: int, nth: int, now: float) -> None:
    """The client's ``nth`` request (0: the first) on its connection ``sport``."""
    eng.on_client_packet(cpkt(CISN + 1 + nth * len(BODY), OISN + 1 + nth * 100, ACK | PSH, BODY,
                              sport=sport), now)


def ack_only(eng: Transcript, s: Session, now: float) -> None:
    """The target's kernel acknowledges the request (the application says nothing)."""
    eng.on_response_record(rec(TISN + 1, s.snd_nxt, ACK, dst=s.fake_ip, dport=s.fake_port), now)


def answer(eng: Transcript, s: Session, now: float, plen: int = 100) -> None:
    """The target's response to the last request (``plen`` bytes, with PSH: complete)."""
    eng.on_response_record(rec(s.rcv_nxt, s.snd_nxt, ACK | PSH, plen, dst=s.fake_ip,
                               dport=s.fake_port), now)


def sessions(eng: Transcript, n: int, now: float, first: int = 41000) -> List[Session]:
    out = []
    for i in range(n):
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=first + i), now)
        s = list(eng.by_fake.values())[-1]
        eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK, sport=first + i), now)
        eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, dst=s.fake_ip,
                                   dport=s.fake_port), now)
        request(eng, first + i, 0, now)
        out.append(s)
    return out


def stalled(eng: Transcript, clock: FakeClock, until: float, step: float = 0.5,
            kernel: Optional[Session] = None) -> List[float]:
    """Checks every ``step`` s up to ``until``: the times a stall was seen starting. With
    ``kernel``, the target's kernel is heard right before each check (an ACK on that session:
    a frozen application's kernel acks the requests and handshakes that keep coming)."""
    started = []
    while clock.t + step <= until + 1e-9:
        clock.sleep(step)
        if kernel is not None:
            ack_only(eng, kernel, clock())
        event, acts = eng.check_stall(clock())
        eng.seen += acts
        if event is not None and not event.ended:
            started.append(clock())
    return started


def test_a_stall_starts_after_s_of_silence_confirmed_by_a_second_check_not_before() -> None:
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, MIN_ASKS, clock())
    assert eng.counters["requests_sent"] == MIN_ASKS
    for s in live:
        ack_only(eng, s, 0.01)      # the kernel acks: still no answer
    beat = live[0]
    assert stalled(eng, clock, 2.0, kernel=beat) == [] and eng.stalled_since == INF  # 1st sighting
    assert stalled(eng, clock, 2.5, kernel=beat) == [2.5] and eng.stalled_since == 2.5
    assert stalled(eng, clock, 5.0, kernel=beat) == []                   # started once


def test_a_slow_request_alone_or_a_busy_answering_target_never_stalls() -> None:
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    sessions(eng, MIN_ASKS - 1, 0.0)            # a long poll or two: not a stalled target
    assert stalled(eng, clock, 30.0) == []
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, 20, 0.0)
    # busy: a request every 0.1 s, each answered 1.5 s after it went out (slower than
    # nothing, faster than S), requests always outstanding
    pending: List[tuple] = []
    t, nth = 0.0, [0] * 20
    for k in range(600):
        t = round(0.1 * (k + 1), 3)
        while pending and pending[0][0] <= t:
            _, s = pending.pop(0)
            answer(eng, s, t)
        i = k % 20
        if k >= 20:                 # sessions' next requests (their last one was answered)
            nth[i] += 1
            request(eng, 41000 + i, nth[i], t)
        pending.append((t + 1.5, live[i]))
        if k % 5 == 4:
            clock.t = t
            event, _ = eng.check_stall(t)
            assert event is None and eng.stalled_since == INF, t
    assert eng.counters["target_stalled"] == eng.counters["sessions_stall_shed"] == 0


def test_a_slow_target_with_a_few_requests_outstanding_is_left_alone_until_held_grows() -> None:
    # the default: the silence only counts once what tcpcopy holds for the target grew by
    # cfg.stall_hold (a slow API answering a few requests late costs nothing)
    eng, clock = engine(target_stall=STALL), FakeClock()
    live = sessions(eng, MIN_ASKS + 2, clock())
    for s in live:
        ack_only(eng, s, 0.01)
    assert stalled(eng, clock, 10.0, kernel=live[0]) == [] and eng.stalled_since == INF
    assert eng.counters["target_stalled"] == 0
    # the same silence while new sessions pile up past 1 MiB held: a stall
    sessions(eng, eng.cfg.stall_hold // SESSION_OVERHEAD + 1, clock(), first=42000)
    assert len(stalled(eng, clock, 11.0, kernel=live[0])) == 1
    assert eng.stalled_since != INF


def test_a_paused_copier_whose_answers_wait_in_its_socket_is_not_a_stall() -> None:
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, MIN_ASKS, 0.0)
    clock.sleep(3.0)                # our loop was paused 3 s: this check runs first ...
    assert eng.check_stall(clock())[0] is None
    answer(eng, live[0], clock())   # ... then the loop reads the answers queued meanwhile
    assert stalled(eng, clock, 6.0) == [] and eng.stalled_since == INF


def test_heard_but_not_lately_is_not_a_stall_before_the_deaf_delay() -> None:
    """An intercept shutting down (the channel's loss not noticed yet) forwards nothing more:
    what was heard before is stale, so only the long silence of a dead host counts."""
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, MIN_ASKS, 0.0)
    ack_only(eng, live[0], 0.05)            # heard once after the asks, then nothing
    assert stalled(eng, clock, deaf_after(STALL)) == [] and eng.stalled_since == INF
    assert stalled(eng, clock, deaf_after(STALL) + 0.5) == [deaf_after(STALL) + 0.5]


def test_an_intercept_outage_is_not_a_stall() -> None:
    eng, clock = engine(target_stall=STALL, hold_timeout=30.0, stall_hold=0), FakeClock()
    sessions(eng, MIN_ASKS, 0.0)
    eng.channel_down(0.5)           # the answers cannot reach us: hold.py's case
    assert stalled(eng, clock, 6.0) == []
    eng.channel_up(6.0)
    assert stalled(eng, clock, 7.0) == []   # the silence of the outage is not counted
    assert eng.stalled_since == INF and eng.counters["target_stalled"] == 0


def test_while_stalled_new_sessions_are_refused_and_counted_but_a_probe_now_and_then() -> None:
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, MIN_ASKS, 0.0)
    assert stalled(eng, clock, 2.5, kernel=live[0]) == [2.5]
    created = eng.counters["sessions_created"]
    for i in range(5):              # within PROBE_INTERVAL of the stall's start: refused
        eng.on_client_packet(cpkt(CISN, 0, SYN, sport=42000 + i), 2.6 + 0.1 * i)
    assert eng.counters["target_stalled"] == 5
    assert eng.counters["sessions_created"] == created
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=42100), 2.5 + PROBE_INTERVAL)   # a probe
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=42101), 2.6 + PROBE_INTERVAL)
    assert eng.counters["sessions_created"] == created + 1
    assert eng.counters["target_stalled"] == 6
    # data of a connection whose copy is gone (no SYN seen) is refused the same way
    request(eng, 42200, 0, 2.7 + PROBE_INTERVAL)
    assert eng.counters["target_stalled"] == 7


def test_while_stalled_the_held_client_bytes_are_shed_and_counted() -> None:
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, 4, 0.0)
    for i in range(4):              # the next requests wait for the unanswered ones (pacing)
        request(eng, 41000 + i, 1, 0.5)
        ack_only(eng, live[i], 0.5)
    assert eng.buffered_total == 4 * len(BODY)
    sends(eng)
    assert stalled(eng, clock, 2.5, kernel=live[0]) == [2.5]
    assert eng.buffered_total == 0 and all(s.state == CLOSED for s in live)
    assert eng.counters["sessions_stall_shed"] == 4
    out = sends(eng)
    assert sum(1 for p in out if p.tcp.flags & RST) == 4   # reset on the target
    # a probe holding bytes for longer than S is shed too; one without bytes is kept
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=43000), 3.5)
    probe = list(eng.by_fake.values())[-1]
    assert probe.state != CLOSED
    eng.on_client_packet(cpkt(CISN + 1, OISN + 1, ACK | PSH, BODY, sport=43000), 3.6)
    assert probe.buffered == len(BODY)      # its SYN is not answered: the request waits
    assert stalled(eng, clock, 5.0, kernel=probe) == [] and probe.state != CLOSED  # < S old
    assert stalled(eng, clock, 6.0, kernel=probe) == [] and probe.state == CLOSED
    assert eng.counters["sessions_stall_shed"] == 5 and eng.buffered_total == 0


def test_the_first_answer_ends_the_stall_and_sessions_are_admitted_again() -> None:
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, MIN_ASKS, 0.0)
    for s in live:
        ack_only(eng, s, 0.01)      # the requests are with the target: nothing held
    assert stalled(eng, clock, 2.5, kernel=live[1]) == [2.5]
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=42000), 2.6)         # refused
    ack_only(eng, live[0], 3.0)                  # a kernel ACK does not end it
    assert eng.stalled_since == 2.5
    answer(eng, live[0], 4.0)                    # the target is back
    assert eng.stalled_since == INF
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=42001), 4.1)
    assert eng.counters["target_stalled"] == 1
    assert eng.counters["sessions_created"] == MIN_ASKS + 1
    clock.t = 4.0
    event, _ = eng.check_stall(4.5)
    assert event is not None and event.ended
    assert (event.seconds, event.refused, event.shed) == (1.5, 1, 0)
    assert eng.check_stall(5.0)[0] is None       # reported once


def test_a_dead_host_stalls_later_and_a_probe_provokes_the_answer_when_it_is_back() -> None:
    """A paused host (not even its kernel answers, or an intercept that lags: nothing heard)
    stalls only after 3 S (at least 5 s); the sessions holding unacknowledged requests are shed; a
    probe's SYN is retransmitted on its RTO until the target is back, then its request goes and
    the answer ends the stall."""
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    live = sessions(eng, MIN_ASKS, 0.0)
    sends(eng)
    deaf = deaf_after(STALL)
    assert deaf == 6.0 and deaf_after(0.5) == 5.0
    assert stalled(eng, clock, deaf) == [] and eng.stalled_since == INF
    assert stalled(eng, clock, deaf + 0.5) == [deaf + 0.5]
    assert all(s.state == CLOSED for s in live)    # their requests were never acked
    assert sum(1 for p in sends(eng) if p.tcp.flags & RST) == MIN_ASKS
    t = deaf + 0.5 + PROBE_INTERVAL
    eng.on_client_packet(cpkt(CISN, 0, SYN, sport=44000), t)
    probe = list(eng.by_fake.values())[-1]
    request(eng, 44000, 0, t + 0.1)
    assert [p.tcp.flags for p in sends(eng)] == [SYN]
    eng.on_timer(eng.next_deadline() or INF)        # its RTO: the SYN again
    assert [p.tcp.flags for p in sends(eng)] == [SYN]
    eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, dst=probe.fake_ip,
                               dport=probe.fake_port), t + 1.1)
    assert [p.payload for p in sends(eng) if p.payload] == [BODY]   # the held request goes
    assert eng.stalled_since == deaf + 0.5
    answer(eng, probe, t + 1.2)
    assert eng.stalled_since == INF
    open_session(eng, 44001, t + 1.3)
    assert eng.counters["target_stalled"] == 0 and eng.counters["sessions_stall_shed"] == MIN_ASKS


def test_the_check_watches_only_while_a_request_is_unanswered_or_a_stall_is_open() -> None:
    """``watching`` false: the daemon parks its 0.1 s timer (an idle copier would otherwise wake
    up ten times a second for nothing) until the next request goes out."""
    eng, clock = engine(target_stall=STALL, stall_hold=0), FakeClock()
    assert not watching(eng)                     # nothing asked yet
    live = sessions(eng, MIN_ASKS, 0.0)
    assert watching(eng)                         # requests with the target, unanswered
    answer(eng, live[0], 0.1)
    assert not watching(eng)                     # answered: nothing outstanding
    live2 = sessions(eng, MIN_ASKS, 0.3, first=43000)
    for s in live2:
        ack_only(eng, s, 0.31)
    assert stalled(eng, clock, 3.0, kernel=live2[0]) == [3.0]
    assert watching(eng)                         # stalled: shed and probe on every check
    answer(eng, live2[0], 3.1)                   # the end is not reported yet
    assert eng.stalled_since == INF and watching(eng)
    event, _ = eng.check_stall(3.2)
    assert event is not None and event.ended and not watching(eng)
    off = engine(target_stall=0.0)
    sessions(off, MIN_ASKS, 0.0)
    assert not watching(off)                     # off: never


def test_off_with_zero() -> None:
    eng, clock = engine(target_stall=0.0), FakeClock()
    sessions(eng, 10, 0.0)
    assert stalled(eng, clock, 60.0) == []


def test_the_flag_default_zero_and_errors() -> None:
    base = ["-x", "80-10.0.0.2:80", "-s", "10.0.0.3"]
    assert session_config(parse_tcpcopy_args(base)).target_stall == DEFAULT_TARGET_STALL_S == 0.5
    assert session_config(parse_tcpcopy_args([*base, "--target-stall-s", "0"])).target_stall == 0
    with pytest.raises(OptionsError, match="--target-stall-s"):
        parse_tcpcopy_args([*base, "--target-stall-s", "-1"])
