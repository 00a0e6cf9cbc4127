"""engine.loop: readers/writers on a local socketpair, timers, the re-schedulable alarm."""

from __future__ import annotations

import os
import signal
import socket
from typing import List

from engine.loop import INF, Loop


def test_reader_writer_timer_alarm_signal_in_order() -> None:
    loop = Loop()
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        got: List[object] = []
        def write() -> None:
            b.send(b"hi")
            loop.remove_writer(b)

        def on_signal() -> None:
            got.append("sig")
            loop.stop()

        loop.add_reader(a, lambda: got.append(a.recv(10)))
        loop.add_writer(b, write)
        loop.call_later(0.01, lambda: got.append("timer"))
        loop.set_alarm(lambda: got.append("alarm"))
        loop.alarm_at = loop.time() + 0.02
        loop.add_signal_handler(signal.SIGUSR1, on_signal)
        loop.call_later(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        loop.run()
        assert got == [b"hi", "timer", "alarm", "sig"]
        assert loop.alarm_at == INF
    finally:
        loop.close()
        a.close()
        b.close()


def test_alarm_moves_without_firing_early_and_runs_once() -> None:
    now = [100.0]
    loop = Loop(clock=lambda: now[0])
    fired: List[float] = []
    loop.set_alarm(lambda: fired.append(now[0]))
    loop.alarm_at = 100.5
    loop.alarm_at = 101.0                 # moved later: nothing at 100.5
    now[0] = 100.6
    assert loop.run_due() == 0 and fired == []
    now[0] = 101.0
    assert loop.run_due() == 1 and fired == [101.0]
    assert loop.run_due() == 0 and fired == [101.0]
    loop.close()
