"""A `labctl.hosts.daemons.Poller` on a FakeClock: readiness waits, graceful stops and timeouts
run in no real time."""

from __future__ import annotations

from labctl.hosts import daemons
from tests.unit.fake_clock import FakeClock


def fake_poller() -> daemons.Poller:
    """A Poller polling every second of a fresh FakeClock."""
    clock = FakeClock()
    return daemons.Poller(clock=clock, sleep=clock.sleep, interval=1.0)
