"""A tiny epoll-based I/O loop with a timer heap (standard library only, Linux).

Shape: readers/writers are callbacks keyed by file descriptor; timers are `(when, seq, handle)`
entries in a heap, cancelled lazily; signals are delivered through a wakeup socketpair so a
handler runs inside the loop (never inside a half-finished callback). Time comes from
`time.monotonic` unless a clock is injected (tests).

Gathering (``gather`` seconds, 0 = off): when a wait for events really waited (nothing was
ready), the loop pauses ``gather`` (never past the next timer) before it runs the callbacks, so
the frames and records that follow within that time are handled in the same wake-up instead of
one wake-up each. A busy loop (events already ready) never pauses. The price is up to
``gather`` of latency per idle wake-up.
"""

from __future__ import annotations

import contextlib
import heapq
import select
import signal
import socket
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

Callback = Callable[[], None]
INF = float("inf")
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
# like selectors.EpollSelector: errors and hang-ups wake both sides, so they see the failure
_READ_MASK = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
_WRITE_MASK = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
FileLike = Union[int, socket.socket]
DEFAULT_GATHER_MS = 0.0          # the daemons' --gather-ms
MAX_GATHER_MS = 50.0


class TimerHandle:
    """A scheduled callback; `cancel()` makes the loop skip it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _fd(obj: FileLike) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


class Loop:
    """Run callbacks when fds are readable/writable, when timers are due and on signals."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 gather: float = 0.0) -> None:
        self._ep = select.epoll()
        self.gather = gather
        self._masks: Dict[int, int] = {}
        self._clock = clock
        self._timers: List[Tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._readers: Dict[int, Callback] = {}
        self._writers: Dict[int, Callback] = {}
        self._signals: Dict[int, Callback] = {}
        self.alarm_at = INF
        self._alarm: Optional[Callback] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._running = False

    def time(self) -> float:
        return self._clock()

    # -- file descriptors ---------------------------------------------------------------------
    def _update(self, fd: int) -> None:
        mask = (_IN if fd in self._readers else 0) | (_OUT if fd in self._writers else 0)
        old = self._masks.get(fd, 0)
        if mask == old:
            return
        if not old:
            self._ep.register(fd, mask)
            self._masks[fd] = mask
        elif not mask:
            self._ep.unregister(fd)
            del self._masks[fd]
        else:
            self._ep.modify(fd, mask)
            self._masks[fd] = mask

    def add_reader(self, obj: FileLike, callback: Callback) -> None:
        fd = _fd(obj)
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, obj: FileLike) -> None:
        fd = _fd(obj)
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, obj: FileLike, callback: Callback) -> None:
        fd = _fd(obj)
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, obj: FileLike) -> None:
        fd = _fd(obj)
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    # -- timers -------------------------------------------------------------------------------
    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        handle = TimerHandle(when, callback)
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, handle))
        return handle

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        return self.call_at(self._clock() + max(0.0, delay), callback)

    def set_alarm(self, callback: Callback) -> None:
        """One re-schedulable timer without allocation: the owner writes ``loop.alarm_at``
        (monotonic time, ``inf`` = off) as often as it likes; ``callback`` runs once when it
        is due (``alarm_at`` is reset to ``inf`` first)."""
        self._alarm = callback

    # -- signals ------------------------------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callback) -> None:
        """Run `callback` in the loop when `signum` arrives (main thread only)."""
        if self._wake_r is None:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
            self.add_reader(self._wake_r, self._drain_signals)
        self._signals[signum] = callback
        signal.signal(signum, lambda _s, _f: None)

    def _drain_signals(self) -> None:
        assert self._wake_r is not None
        try:
            data = self._wake_r.recv(256)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            cb = self._signals.get(signum)
            if cb is not None:
                cb()

    # -- running ------------------------------------------------------------------------------
    def stop(self) -> None:
        self._running = False

    def _next_timeout(self, cap: Optional[float]) -> Optional[float]:
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        when = self.alarm_at
        if timers and timers[0][0] < when:
            when = timers[0][0]
        if when == INF:
            return cap
        delay = max(0.0, when - self._clock())
        return delay if cap is None else min(delay, cap)

    def run_once(self, timeout: Optional[float] = None) -> None:
        """Wait at most `timeout` (None: until the next timer or event), dispatch everything due."""
        wait = self._next_timeout(timeout)
        if self._masks:
            try:
                if self.gather > 0.0 and wait != 0.0:
                    events = self._gathered(wait)
                else:
                    events = self._ep.poll(-1 if wait is None else wait)
            except InterruptedError:
                events = []
        else:
            if wait is None:
                raise RuntimeError("loop has nothing to wait for")
            time.sleep(wait)
            events = []
        readers, writers = self._readers, self._writers
        for fd, mask in events:
            if mask & _READ_MASK:
                cb = readers.get(fd)
                if cb is not None:
                    cb()
            if mask & _WRITE_MASK:
                cb = writers.get(fd)
                if cb is not None:
                    cb()
        self.run_due()

    def _gathered(self, wait: Optional[float]) -> List[Tuple[int, int]]:
        """Events, after a pause of ``gather`` when the wait for them was a real wait."""
        events = self._ep.poll(0)
        if events:
            return events                       # busy: no pause
        events = self._ep.poll(-1 if wait is None else wait)
        if events:
            pause = self._next_timeout(self.gather)
            if pause:
                time.sleep(pause)
        return events

    def run_due(self) -> int:
        """Run the timers (and the alarm) that are due now; returns how many ran."""
        now = self._clock()
        timers = self._timers
        ran = 0
        while timers and timers[0][0] <= now:
            _, _, handle = heapq.heappop(timers)
            if not handle.cancelled:
                handle.cancelled = True
                ran += 1
                handle.callback()
        if self.alarm_at <= now and self._alarm is not None:
            self.alarm_at = INF
            ran += 1
            self._alarm()
        return ran

    def run(self) -> None:
        """Run until `stop()` is called."""
        self._running = True
        while self._running:
            self.run_once()

    def close(self) -> None:
        if self._wake_r is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(-1)
            for signum in self._signals:
                signal.signal(signum, signal.SIG_DFL)
            self.remove_reader(self._wake_r)
            self._wake_r.close()
            if self._wake_w is not None:
                self._wake_w.close()
            self._wake_r = self._wake_w = None
        self._ep.close()
