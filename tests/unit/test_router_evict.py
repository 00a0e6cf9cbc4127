"""Route-table eviction (regression for 01203ba): when the table is full, the oldest route of the
connection holding the MOST routes goes (``route_evictions``), so a peer flooding registrations
evicts its own routes and another tcpcopy's live (older, fewer) routes survive."""

from __future__ import annotations

from engine import packets as P
from engine import protocol as C
from engine.router import Router

QUIET, FLOOD = 1, 2
TARGET = P.ip_aton("10.77.1.20")


def key(client: int, port: int) -> tuple:
    return (P.ip_aton(f"10.79.1.{client}"), port, TARGET, 80)


def test_flooder_evicts_its_own_oldest_routes_quiet_routes_survive() -> None:
    r = Router(max_routes=10)
    quiet = [key(1, 40000 + i) for i in range(3)]
    for k in quiet:                       # the oldest routes in the table
        r.add_route(k, QUIET, 0.0)
    flood = [key(2, 1024 + i) for i in range(500)]
    for i, k in enumerate(flood):
        r.add_route(k, FLOOD, 1.0 + i * 0.001)
    assert r.route_count == 10 and r.counters["route_evictions"] == 503 - 10
    assert [r.lookup(k) for k in quiet] == [QUIET] * 3
    assert [r.lookup(k) for k in flood[-7:]] == [FLOOD] * 7       # its newest 7 kept
    assert all(r.lookup(k) is None for k in flood[:-7])
    # the quiet connection's responses are still routed to it
    r.route_response(quiet[0], P.ACK, b"q" * 64, 2.0)
    assert r.frames(2.0, force=True) == [(QUIET, C.encode_frame([b"q" * 64]))]
    assert r.counters["resp_unrouted"] == 0


def test_a_new_route_of_the_smaller_connection_evicts_from_the_larger_one() -> None:
    r = Router(max_routes=5)
    r.add_route(key(1, 1), QUIET, 0.0)                # the globally oldest route
    big = [key(2, 1000 + i) for i in range(4)]
    for k in big:
        r.add_route(k, FLOOD, 1.0)                    # table full now (5)
    r.add_route(key(1, 2), QUIET, 2.0)                # QUIET registers: FLOOD holds the most
    assert r.counters["route_evictions"] == 1 and r.route_count == 5
    assert r.lookup(big[0]) is None                   # FLOOD's oldest, not the global oldest
    assert [r.lookup(k) for k in big[1:]] == [FLOOD] * 3
    assert r.lookup(key(1, 1)) == QUIET and r.lookup(key(1, 2)) == QUIET


def test_quiet_connection_keeps_reregistering_through_a_flood() -> None:
    """Keep-alive tcpcopy re-registers its live tuples while a peer floods: never evicted."""
    r = Router(max_routes=50)
    live = [key(1, 30000 + i) for i in range(20)]
    for k in live:
        r.add_route(k, QUIET, 0.0)
    for i in range(5000):
        r.add_route(key(2, i % 60000 + 1), FLOOD, 1.0)
        if i % 1000 == 999:
            for k in live:
                r.add_route(k, QUIET, 1.0)
    assert [r.lookup(k) for k in live] == [QUIET] * 20
    assert r.route_count == 50 and r.counters["route_evictions"] == 5020 - 50


def test_moved_and_deleted_routes_are_not_counted_for_their_old_connection() -> None:
    r = Router(max_routes=4)
    for i in range(3):
        r.add_route(key(2, i), FLOOD, 0.0)
    r.add_route(key(3, 1), FLOOD, 0.5)
    r.add_route(key(2, 0), QUIET, 1.0)                # re-registered by another connection
    r.add_route(key(2, 1), QUIET, 1.0)
    r.del_route(key(2, 2))                            # FLOOD now holds only (3, 1)
    r.add_route(key(3, 2), FLOOD, 2.0)
    r.add_route(key(3, 3), QUIET, 3.0)                # full: QUIET holds the most (3 vs 2)
    assert r.counters["route_evictions"] == 1 and r.route_count == 4
    assert r.lookup(key(2, 0)) is None and r.lookup(key(2, 1)) == QUIET
    assert r.lookup(key(3, 1)) == FLOOD               # the globally oldest route survives
    assert r.lookup(key(3, 2)) == FLOOD and r.lookup(key(3, 3)) == QUIET
