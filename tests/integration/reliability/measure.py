"""What the reliability rows measure and wait on: tcpcopy's RSS and stats-file gaps (a
stalled event loop), its counters, live client ports, the traffic generator."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tests.integration.copyrig import Rig, read_json, wait_for

STATS_INTERVAL = 0.2                 # the rig's --stats-interval (tcpcopy writes its stats file)


# -- sampling ------------------------------------------------------------------------------------
def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ring_kb(pid: int) -> int:
    """Resident kB of the process's capture rings (``socket:[...]`` mappings: packet rings,
    which tcpcopy's ``-m`` leaves out, docs/engine.md)."""
    total, ring = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                head = line.split(None, 6)
                if head and "-" in head[0] and len(head) >= 5:      # a mapping's first line
                    ring = len(head) == 6 and head[5].startswith("socket:")
                elif ring and line.startswith("Rss:"):
                    total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return total


class Sampler:
    """tcpcopy's VmRSS (kB: peak, and a series of (s, kB) every ``step``), the bytes its sessions
    hold (``buffered_bytes`` of its stats file) and the longest gap between two updates of the
    stats file, sampled in a thread until ``stop()``."""

    def __init__(self, pid: int, stats: Optional[Any] = None, step: float = 0.1) -> None:
        self.pid, self.stats_path, self.step = pid, stats, step
        self.peak = self.samples = self.ring = 0
        self.series: List[Tuple[float, int]] = []
        self.held: List[Tuple[float, int]] = []       # (s, tcpcopy's buffered_bytes)
        self.max_gap = 0.0
        self._last_update: Optional[float] = None
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        return rss_kb(self.pid)

    def peak_since(self, t: float, held: bool = False) -> int:
        """The highest RSS sample (kB; ``held``: buffered bytes) taken at or after ``t``
        (monotonic)."""
        return max((v for at, v in (self.held if held else self.series) if at >= t - self.t0),
                   default=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = self.now()
            self.peak = max(self.peak, kb)
            self.samples += 1
            self.series.append((round(time.monotonic() - self.t0, 2), kb))
            doc = read_json(self.stats_path) if self.stats_path else None
            held = doc.get("buffered_bytes") if doc else None
            if isinstance(held, int):
                self.held.append((round(time.monotonic() - self.t0, 2), held))
            upd = doc.get("updated_at") if doc else None
            if isinstance(upd, (int, float)):
                if self._last_update is not None and upd > self._last_update:
                    self.max_gap = max(self.max_gap, upd - self._last_update)
                self._last_update = max(upd, self._last_update or 0.0)
            self._stop.wait(self.step)

    def stop(self) -> int:
        """Stop sampling; the peak (kB). ``ring`` is then the capture rings' share of RSS."""
        self._stop.set()
        self._thread.join(5)
        self.ring = ring_kb(self.pid)
        return self.peak


def within(pred: Any, timeout: float, step: float = 0.1) -> Optional[float]:
    """Seconds until ``pred()`` held, or None if it did not within ``timeout``."""
    t0 = time.monotonic()
    try:
        wait_for(pred, timeout, "", step)
    except AssertionError:
        return None
    return time.monotonic() - t0


def pid_of(rig: Rig, name: str = "tcpcopy") -> int:
    return int((rig.dir / f"{name}.pid").read_text())


def alive(rig: Rig, proc: subprocess.Popen[bytes], name: str = "tcpcopy") -> bool:
    return proc.poll() is None and rig.stats(name).get("state") == "running"


def counters(rig: Rig, name: str = "tcpcopy") -> Dict[str, int]:
    c: Dict[str, int] = rig.stats(name).get("counters", {})
    return c


def quiet_counters(rig: Rig, name: str, key: str, quiet: float = 1.0,
                   limit: float = 15) -> Dict[str, int]:
    """The counters once ``key`` has not moved for ``quiet`` s (stats are written every 0.2 s)."""
    last, since = -1, time.monotonic()
    deadline = since + limit
    while True:
        c = counters(rig, name)
        if c.get(key, -1) != last:
            last, since = c.get(key, -1), time.monotonic()
        elif time.monotonic() - since >= quiet or time.monotonic() > deadline:
            return c
        time.sleep(0.2)


def live_ports(rig: Rig, src: str = "") -> List[int]:
    filt = ["dst", f"{rig.online}:80", *(["src", src] if src else [])]
    out = rig.ns("client", ["ss", "-tnH", "state", "established", *filt])
    return sorted({int(line.split()[-2].rsplit(":", 1)[1]) for line in out.stdout.splitlines()
                   if line.strip()})


def copied_uri(rig: Rig, uri: str) -> int:
    return sum(n for (_m, u, _l), n in rig.target_copies().items() if u.startswith(uri))


def generator(rig: Rig, name: str, mode: str, connections: int, requests: int, rate: float,
              extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """The lab traffic generator in the client namespace, in the background (out: NAME.out)."""
    return rig.spawn("client", [sys.executable, "-m", "labctl.lab.traffic", "--url",
                                f"http://{rig.online}", "--requests", str(requests), "--rate",
                                str(rate), "--mode", mode, "--connections", str(connections),
                                "--seq-query", "--json", "--timeout", "20", *extra], name)


def finish(rig: Rig, gen: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    assert gen.wait(timeout) == 0, (rig.dir / f"{name}.out").read_text()[-2000:]
