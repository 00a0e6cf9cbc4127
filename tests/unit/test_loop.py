"""engine.loop: readers/writers on a local socketpair, timers, the re-schedulable alarm."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import List, Tuple

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


# ---------------------------------------------------------------- gathering (--gather-ms)

def _pair() -> Tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_gather_pauses_an_idle_wakeup_so_later_bytes_come_in_the_same_callback() -> None:
    a, b = _pair()
    loop = Loop(gather=0.3)
    got: List[bytes] = []
    loop.add_reader(b, lambda: got.append(b.recv(100)))
    writer = threading.Thread(target=lambda: (time.sleep(0.05), a.send(b"1"), a.send(b"2")))
    writer.start()
    t0 = time.monotonic()
    loop.run_once(timeout=5.0)
    took = time.monotonic() - t0
    writer.join()
    assert took >= 0.3                    # it waited for the byte, then paused 0.3 s
    assert got == [b"12"]                 # both bytes in the one wake-up
    loop.close()
    a.close()
    b.close()


def test_gather_never_pauses_a_busy_loop_nor_past_a_timer() -> None:
    a, b = _pair()
    loop = Loop(gather=5.0)
    got: List[bytes] = []
    loop.add_reader(b, lambda: got.append(b.recv(100)))
    a.send(b"x")                          # ready before the wait: busy, no pause
    t0 = time.monotonic()
    loop.run_once(timeout=10.0)
    assert got == [b"x"] and time.monotonic() - t0 < 2.5
    fired: List[float] = []
    loop.call_later(0.2, lambda: fired.append(time.monotonic()))
    writer = threading.Thread(target=lambda: (time.sleep(0.05), a.send(b"y")))
    writer.start()
    t0 = time.monotonic()
    while not fired and time.monotonic() - t0 < 10.0:
        loop.run_once(timeout=10.0)
    writer.join()
    assert got == [b"x", b"y"] and fired       # the pause ended at the timer, not after 5 s
    assert fired[0] - t0 < 2.5
    loop.close()
    a.close()
    b.close()
