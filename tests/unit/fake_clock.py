"""A clock that moves only when slept on, and a `labctl.hosts.daemons.Poller` on it: readiness
waits, graceful stops and timeouts run in no real time."""

from __future__ import annotations

from labctl.hosts import daemons


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def fake_poller() -> daemons.Poller:
    """A Poller polling every second of a fresh FakeClock."""
    clock = FakeClock()
    return daemons.Poller(clock=clock, sleep=clock.sleep, interval=1.0)
