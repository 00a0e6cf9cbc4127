"""Network conditions on the copy path, applied by the daemons themselves (pure, no I/O).

``Netem`` shapes what a daemon emits towards the test side: tcpcopy the copied packets it sends
to the target, intercept the response frames it forwards to tcpcopy. It works on any kernel
(no ``sch_netem``) and never touches production traffic: only the copies pass through it.

    --netem-delay MS     fixed one-way delay
    --netem-jitter MS    plus or minus up to MS, uniformly (order kept unless --netem-reorder)
    --netem-loss PCT     drop this share of packets (TCP retransmits them like a wire loss)
    --netem-reorder PCT  send this share at once, ahead of the delayed ones (needs a delay)
    --netem-rate KBIT    serialise at this rate (a bottleneck link), after the delay
    --netem-file PATH    conditions as JSON (``parse_file``), read at start and on SIGHUP: a
                         drill changes them on a running daemon (no file: the flags)

Sans-I/O: ``offer(item, size, now)`` returns the item when it may go at once, else keeps it (or
drops it) and returns None; ``due(now)`` hands out the items whose time came, in order;
``next_deadline()`` says when. The random source is seeded (tests replay exactly).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from typing import Dict, Generic, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")
QUEUE_MAX = 200_000         # items held at most; beyond, an offered item is dropped (counted)
COUNTERS = ("netem_delayed", "netem_dropped", "netem_reordered", "netem_overflow")


class NetemSpec(NamedTuple):
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    reorder_pct: float = 0.0
    rate_kbit: float = 0.0

    @property
    def active(self) -> bool:
        return any(self)

    def describe(self) -> str:
        parts = []
        if self.delay_ms or self.jitter_ms:
            parts.append(f"delay {self.delay_ms:g} ms" +
                         (f" ± {self.jitter_ms:g} ms" if self.jitter_ms else ""))
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g} %")
        if self.reorder_pct:
            parts.append(f"reorder {self.reorder_pct:g} %")
        if self.rate_kbit:
            parts.append(f"rate {self.rate_kbit:g} kbit/s")
        return ", ".join(parts) or "none"


FLAGS = (
    ("--netem-delay", "MS", "delay every copy by MS milliseconds (the copy path only)"),
    ("--netem-jitter", "MS", "plus or minus up to MS milliseconds, uniformly"),
    ("--netem-loss", "PCT", "drop PCT %% of the copies (retransmitted like a wire loss)"),
    ("--netem-reorder", "PCT", "send PCT %% at once, ahead of delayed ones (needs a delay)"),
    ("--netem-rate", "KBIT", "serialise the copies at KBIT kbit/s"),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--netem-*`` flags on a daemon's parser (dest ``netem_delay`` …)."""
    for flag, metavar, text in FLAGS:
        parser.add_argument(flag, type=float, default=0.0, metavar=metavar, help=text)
    parser.add_argument("--netem-file", metavar="PATH",
                        help="conditions as JSON, read at start and again on SIGHUP "
                             "(overrides the --netem-* flags while it exists)")


def spec_of(ns: argparse.Namespace) -> NetemSpec:
    """The parsed flags as a spec (check it with ``check_spec``)."""
    return NetemSpec(ns.netem_delay, ns.netem_jitter, ns.netem_loss, ns.netem_reorder,
                     ns.netem_rate)


def parse_file(text: str) -> NetemSpec:
    """A ``--netem-file``: JSON ``{"delay_ms": 50, "jitter_ms": 5, "loss_pct": 0.5,
    "reorder_pct": 0, "rate_kbit": 0}`` (any key may be left out; ``{}`` = no conditions).
    Raises ValueError naming the key."""
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    unknown = sorted(set(doc) - set(NetemSpec._fields))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (keys: {', '.join(NetemSpec._fields)})")
    values = {}
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        values[key] = float(value)
    spec = NetemSpec(**values)
    bad = check_spec(spec)
    if bad is not None:
        raise ValueError(f"{bad[0][2:].replace('-', '_')}: {bad[1]}")
    return spec


def check_spec(spec: NetemSpec) -> Optional[Tuple[str, str]]:
    """(flag, why) for a spec that cannot be used, else None."""
    for flag, value, hi in (("--netem-delay", spec.delay_ms, 60_000.0),
                            ("--netem-jitter", spec.jitter_ms, 60_000.0),
                            ("--netem-loss", spec.loss_pct, 100.0),
                            ("--netem-reorder", spec.reorder_pct, 100.0),
                            ("--netem-rate", spec.rate_kbit, 100e6)):
        if not 0 <= value <= hi:
            return flag, f"{value:g} out of range (0-{hi:g})"
    if spec.jitter_ms > spec.delay_ms:
        return "--netem-jitter", "larger than --netem-delay (a packet cannot leave early)"
    if spec.reorder_pct and not spec.delay_ms:
        return "--netem-reorder", "needs --netem-delay (reordered packets skip the delay)"
    return None


class Netem(Generic[T]):
    """Delay, jitter, loss, reordering and a rate limit on one stream of items."""

    def __init__(self, spec: NetemSpec, counters: Dict[str, int], seed: int = 0) -> None:
        self.counters = counters
        for name in COUNTERS:
            counters.setdefault(name, 0)
        self.rnd = random.Random(seed)
        self.reconfigure(spec)
        self.heap: List[Tuple[float, int, T]] = []
        self.seq = 0
        self.last_due = 0.0         # departures stay in order (FIFO) unless reordered
        self.link_free = 0.0        # when the rate-limited link is free again

    def reconfigure(self, spec: NetemSpec) -> None:
        """New conditions from now on (items already held keep their times)."""
        self.spec = spec
        self.delay = spec.delay_ms / 1000.0
        self.jitter = spec.jitter_ms / 1000.0
        self.loss = spec.loss_pct / 100.0
        self.reorder = spec.reorder_pct / 100.0
        self.byte_time = 8.0 / (spec.rate_kbit * 1000.0) if spec.rate_kbit else 0.0

    def offer(self, item: T, size: int, now: float) -> Optional[T]:
        """The item, if it goes now; None if it was kept for later or dropped."""
        rnd = self.rnd
        if self.loss and rnd.random() < self.loss:
            self.counters["netem_dropped"] += 1
            return None
        jump = bool(self.reorder) and rnd.random() < self.reorder
        if jump:
            self.counters["netem_reordered"] += 1
            at = now
        else:
            at = now + self.delay
            if self.jitter:
                at += rnd.uniform(-self.jitter, self.jitter)
            at = max(at, self.last_due)
            self.last_due = at
        if self.byte_time:
            at = max(at, self.link_free)
            self.link_free = at + size * self.byte_time
        if at <= now and (jump or not self.heap):
            return item                 # (a reordered item jumps the queue)
        if len(self.heap) >= QUEUE_MAX:
            self.counters["netem_overflow"] += 1
            return None
        self.counters["netem_delayed"] += 1
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, item))
        return None

    def due(self, now: float) -> Sequence[T]:
        """The held items whose time came, in departure order."""
        heap = self.heap
        if not heap or heap[0][0] > now:
            return ()
        out = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out

    def next_deadline(self) -> Optional[float]:
        return self.heap[0][0] if self.heap else None

    def __len__(self) -> int:
        return len(self.heap)


__all__ = ["COUNTERS", "FLAGS", "Netem", "NetemSpec", "add_flags", "check_spec", "parse_file",
           "spec_of"]
