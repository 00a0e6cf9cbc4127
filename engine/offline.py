"""Offline replay: client packets from a pcap file instead of a live capture (tcpcopy --pcap).

Like the C tool's offline build, this is the same session emulator fed from a file: it still
needs intercept and a live target. Timing follows the file: the first packet is anchored to the
start, and a packet is due once (file time since the first packet) <= (wall time since the start
x ``accelerate``) + (idle time skipped). With ``idle_skip`` > 0, a gap between consecutive packets
longer than that is skipped. ``repeat`` replays the whole file that many times.

Sans-I/O apart from reading the file: ``due(elapsed)`` returns the IPv4 packets to feed now.
Link types: Ethernet (with VLAN tags), Linux cooked v1/v2, raw IPv4. Packets cut short by the
capture's snap length are counted as ``truncated`` and skipped (their payload is incomplete).
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, List, Optional, Tuple

from engine.packets import ETH_P_IP, PacketError, strip_ethernet
from engine.pcapfile import PcapError, PcapRecord, iter_pcap

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = (12, 14, 101)
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED = (LINKTYPE_ETHERNET, *LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL,
             LINKTYPE_LINUX_SLL2)

__all__ = ["OfflineError", "OfflineFeeder", "OfflineSource", "ip_payload"]


class OfflineError(Exception):
    """The pcap file cannot be replayed (unreadable, not pcap, unsupported link type)."""


def ip_payload(linktype: int, frame: bytes) -> Optional[bytes]:
    """The IPv4 packet inside a captured frame, or None if it carries something else."""
    if linktype == LINKTYPE_ETHERNET:
        try:
            etype, off = strip_ethernet(frame)
        except PacketError:
            return None
        return frame[off:] if etype == ETH_P_IP else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16 or frame[14:16] != b"\x08\x00":
            return None
        return frame[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20 or frame[0:2] != b"\x08\x00":
            return None
        return frame[20:]
    # raw IP link types: IPv4 only
    return frame if frame and frame[0] >> 4 == 4 else None


class OfflineSource:
    """Packets of one pcap file, paced by the file's timestamps (see the module doc)."""

    def __init__(self, path: str, accelerate: float = 1.0, idle_skip: float = 0.0,
                 repeat: int = 1) -> None:
        self.path = path
        self.accelerate = accelerate
        self.idle_skip = idle_skip
        self.repeat = max(1, repeat)
        self.round = 0
        self.records = 0
        self.truncated = 0
        self.not_ip = 0
        self._stream: Optional[BinaryIO] = None
        self._iter: Optional[Iterator[Tuple[int, PcapRecord]]] = None
        self._pending: Optional[Tuple[int, PcapRecord]] = None
        self._first: Optional[float] = None
        self._last: Optional[float] = None
        self._skipped = 0.0
        self._round_start = 0.0
        self.done = False
        self._open()

    def _open(self) -> None:
        try:
            self._stream = open(self.path, "rb")  # noqa: SIM115 (closed in close())
            self._iter = iter_pcap(self._stream, self.path)
            self._pending = next(self._iter, None)
        except (OSError, PcapError) as exc:
            self.close()
            raise OfflineError(f"--pcap {self.path}: {exc}") from None
        if self._pending is not None and self._pending[0] not in SUPPORTED:
            lt = self._pending[0]
            self.close()
            raise OfflineError(f"--pcap {self.path}: link type {lt} is not supported "
                               "(Ethernet, Linux cooked, raw IPv4 are)")
        self._first = self._last = None
        self._skipped = 0.0

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = None
        self._iter = None

    def due(self, elapsed: float, limit: int = 1 << 30) -> List[bytes]:
        """IPv4 packets due ``elapsed`` seconds (wall clock) after the replay began (at most
        ``limit`` file records per call)."""
        out: List[bytes] = []
        budget = (elapsed - self._round_start) * self.accelerate
        taken = 0
        while taken < limit:
            item = self._pending
            if item is None:
                break
            linktype, rec = item
            if self._first is None:
                self._first = self._last = rec.ts
            assert self._last is not None
            gap = rec.ts - self._last
            if self.idle_skip > 0 and gap > self.idle_skip:
                self._skipped += gap - self.idle_skip
                self._last = rec.ts            # skip only once for this gap
            if rec.ts - self._first - self._skipped > budget + 1e-9:
                break
            self._last = rec.ts
            self._pending = self._advance()
            self.records += 1
            taken += 1
            if len(rec.data) < rec.orig_len:
                self.truncated += 1
                continue
            ip = ip_payload(linktype, rec.data)
            if ip is None:
                self.not_ip += 1
                continue
            out.append(ip)
        return out

    def _advance(self) -> Optional[Tuple[int, PcapRecord]]:
        assert self._iter is not None
        try:
            return next(self._iter, None)
        except PcapError:
            self.truncated += 1               # a cut-off last record: the file ends there
            return None

    @property
    def at_eof(self) -> bool:
        """The current round has given every packet of the file."""
        return self._pending is None

    def next_round(self, elapsed: float) -> bool:
        """Start the next round ``elapsed`` s after the replay began; False when all are done."""
        self.close()
        self.round += 1
        if self.round >= self.repeat:
            self.done = True
            return False
        self._open()
        self._round_start = elapsed
        return True

    def seconds_until_next(self, elapsed: float) -> Optional[float]:
        """Wall seconds until the next packet is due (None: end of this round; 0: now)."""
        if self._pending is None:
            return None
        if self._first is None:
            return 0.0
        rec = self._pending[1]
        gap = rec.ts - (self._last if self._last is not None else rec.ts)
        skip = gap - self.idle_skip if self.idle_skip > 0 and gap > self.idle_skip else 0.0
        file_at = rec.ts - self._first - self._skipped - skip
        return max(0.0, file_at / self.accelerate - (elapsed - self._round_start))


class OfflineFeeder:
    """Drives an OfflineSource from the event loop: feeds due packets to the engine. At the end
    of each round it waits up to ``drain_timeout`` s for the sessions to finish (like the C tool);
    sessions still open then are reset on the target, so that the next round (same client
    tuples and sequence numbers) starts clean. After the last round the loop is stopped."""

    BATCH = 1024          # packets per tick at most, so channel reads are not starved
    MAX_SLEEP = 0.05

    def __init__(self, source: OfflineSource, loop, engine, collect, after_batch,  # type: ignore
                 log, drain_timeout: float) -> None:
        """``collect(actions, now)`` keeps the engine's actions; ``after_batch(now)`` carries
        them out (the daemon's)."""
        self.source, self.loop, self.engine = source, loop, engine
        self.collect, self.after_batch, self.log = collect, after_batch, log
        self.drain_timeout = drain_timeout
        self.start = 0.0
        self.drain_until: Optional[float] = None
        self.reset_at_round_end = 0
        self.finished = False

    def begin(self) -> None:
        self.start = self.loop.time()
        src = self.source
        self.log.notice(f"TC_OFFLINE mode: {src.path}, accelerated {src.accelerate:g} times, "
                        f"idle skip {int(src.idle_skip * 1000)} ms, {src.repeat} round(s)")
        self.loop.call_later(0, self.tick)

    def summary(self) -> dict:
        s = self.source
        return {"file": s.path, "round": min(s.round + 1, s.repeat), "rounds": s.repeat,
                "records": s.records, "truncated": s.truncated, "not_ipv4": s.not_ip,
                "reset_at_round_end": self.reset_at_round_end, "done": self.finished}

    def tick(self) -> None:
        now = self.loop.time()
        elapsed = now - self.start
        src = self.source
        if self.drain_until is None:
            pkts = src.due(elapsed, self.BATCH)
            feed, collect = self.engine.on_client_packet, self.collect
            for ip in pkts:
                acts = feed(ip, now)
                if acts:
                    collect(acts, now)
            if pkts:
                self.after_batch(now)
            nxt = src.seconds_until_next(elapsed)
            if nxt is not None:
                self.loop.call_later(min(nxt, self.MAX_SLEEP), self.tick)
                return
            self.drain_until = now + self.drain_timeout
            self.log.notice(f"end of round {src.round + 1}/{src.repeat} of {src.path} "
                            f"({src.records} records, {src.truncated} truncated, {src.not_ip} "
                            f"not IPv4 so far); waiting up to {self.drain_timeout:g} s for "
                            f"{self.engine.sessions_active} sessions")
        live = self.engine.sessions_active
        if live and now < self.drain_until:
            self.loop.call_later(0.1, self.tick)
            return
        if live:
            self.log.warn(f"{live} sessions still open at the end of round {src.round + 1}: "
                          "reset on the target")
            self.reset_at_round_end += live
            self.collect(self.engine.shutdown(now), now)
            self.after_batch(now)
        self.drain_until = None
        if src.next_round(elapsed):
            self.loop.call_later(0, self.tick)
            return
        self.finished = True
        self.log.notice("offline replay is complete")
        self.loop.stop()
