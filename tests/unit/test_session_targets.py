"""Several targets for one online port (`-x 80-T1:80,80-T2:80`): every client session is
copied to each target, on its own fake tuple (intercept routes responses by it)."""

from __future__ import annotations

from engine.packets import ACK, FIN, PSH, SYN, ip_aton
from engine.session.config import Route, SessionConfig
from tests.unit.session_transcript import (
    CISN,
    FAKE,
    ONLINE,
    TARGET,
    TISN,
    Transcript,
    cpkt,
    rec,
    sends,
)

TARGET2 = ip_aton("10.77.1.21")


def test_each_client_session_goes_to_every_target_on_distinct_tuples() -> None:
    routes = [Route(ONLINE, 80, TARGET, 8080), Route(ONLINE, 80, TARGET2, 8080)]
    eng = Transcript(SessionConfig(routes, fake_ips=list(FAKE), replicas=2))
    eng.on_client_packet(cpkt(CISN, 0, SYN), 0.0)
    syns = sends(eng)
    assert [p.ip.dst for p in syns] == [TARGET, TARGET, TARGET2, TARGET2]
    tuples = {(p.ip.src, p.tcp.sport) for p in syns}
    assert len(tuples) == 4 and eng.counters["sessions_created"] == 4
    # each copy hears its own target's SYN-ACK and sends the request there
    eng.on_client_packet(cpkt(CISN + 1, 1, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n"), 0.01)
    for p in syns:
        eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, dst=p.ip.src, dport=p.tcp.sport,
                                   src=p.ip.dst), 0.02)
    eng.flush(0.02)
    data = [p for p in sends(eng) if p.payload]
    assert sorted((p.ip.dst, p.ip.src, p.tcp.sport) for p in data) == sorted(
        (p.ip.dst, p.ip.src, p.tcp.sport) for p in syns)


def test_a_copy_its_target_closed_is_started_again_while_the_other_goes_on() -> None:
    """Target 2 closes its copy after a response (nginx does after a 500): the client's next
    request still reaches both targets -- target 2 on a new copy (a faked SYN), target 1 on
    the copy it had."""
    routes = [Route(ONLINE, 80, TARGET, 8080), Route(ONLINE, 80, TARGET2, 8080)]
    eng = Transcript(SessionConfig(routes, fake_ips=list(FAKE)))
    eng.on_client_packet(cpkt(CISN, 0, SYN), 0.0)
    syns = sends(eng)
    first = b"GET /err HTTP/1.1\r\n\r\n"
    eng.on_client_packet(cpkt(CISN + 1, 1, ACK | PSH, first), 0.01)
    for p in syns:
        eng.on_response_record(rec(TISN, CISN + 1, SYN | ACK, dst=p.ip.src, dport=p.tcp.sport,
                                   src=p.ip.dst), 0.02)
    eng.flush(0.02)
    sends(eng)
    one, two = syns
    end = CISN + 1 + len(first)
    eng.on_response_record(rec(TISN + 1, end, ACK | PSH, 100, dst=one.ip.src,
                               dport=one.tcp.sport, src=one.ip.dst), 0.03)
    eng.on_response_record(rec(TISN + 1, end, ACK | PSH | FIN, 100, dst=two.ip.src,
                               dport=two.tcp.sport, src=two.ip.dst), 0.03)
    eng.flush(0.03)
    sends(eng)
    second = b"GET / HTTP/1.1\r\n\r\n"
    eng.on_client_packet(cpkt(end, 101, ACK | PSH, second), 0.04)
    out = sends(eng)
    assert eng.counters["sessions_revived"] == 1
    to_one = [p for p in out if p.ip.dst == TARGET and p.payload == second]
    syn_two = [p for p in out if p.ip.dst == TARGET2 and p.tcp.flags == SYN]
    assert len(to_one) == 1 and len(syn_two) == 1 and syn_two[0].tcp.seq == end - 1
