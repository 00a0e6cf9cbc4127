"""A clock that moves only when slept on: waits, timeouts and timers run in no real time.
Standard library only (the engine's tests import it under PyPy too)."""

from __future__ import annotations


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
