"""`--window N` counts its N seconds back from when the command started, not from when the
logs are read after labctl's own start-up (~1-2.5 s): the process's start from /proc, the
scope's anchor, and a watch that slides from the second read on."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.cli.app import started_at
from labctl.inventory.load import parse_inventory
from labctl.transport.pool import HostPool
from labctl.verify import fetch as V
from tests.unit.test_ledger_fanin import BASE
from tests.unit.test_verify_targets import INVENTORY, N, _hosts

# /proc/PID/stat of a process named with a space and a parenthesis; field 22 (starttime) is
# 1000 ticks: 10.0 s after boot at 100 ticks per second
STAT = ("4242 (lab ctl) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 50 10 0 0 20 0 1 0 1000 "
        "30000000 5000 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0")


def test_a_process_start_from_proc_uptime_and_its_stat() -> None:
    # up 12.5 s: the process is 2.5 s old
    assert started_at(1000.0, "12.50 20.00\n", STAT, 100) == pytest.approx(997.5)


@pytest.mark.parametrize("uptime, stat", [
    ("9.00 1.00", STAT),                       # started after "now": clocks disagree
    ("7210.00 1.00", STAT),                    # two hours old: not a command's start
    ("", STAT),
    ("12.5", "4242 (labctl) S 1 2 3"),          # a stat cut short
    ("12.5", "garbage"),
])
def test_nonsense_gives_no_start(uptime: str, stat: str) -> None:
    assert started_at(1000.0, uptime, stat, 100) is None


def test_a_window_ends_at_the_anchor() -> None:
    assert V.Scope(window=60.0).start(1000.0) == 940.0
    assert V.Scope(window=60.0, anchor=997.5).start(1000.0) == 937.5
    assert V.Scope(window=60.0, anchor=1005.0).start(1000.0) == 940.0   # never past now
    assert V.Scope(since=5.0, anchor=997.5).start(1000.0) == 5.0


def test_the_first_read_counts_from_the_anchor_then_the_watch_slides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    inv = parse_inventory(INVENTORY)
    fakes = _hosts(green_lost=0)       # N online requests at BASE + 0 .. BASE + N - 1
    now = [BASE + N + 1.0]
    scope = V.resolve_scope(inv, since_up=False, window=20.0, anchor=BASE + N - 9.5)
    with HostPool(inv, factory=lambda spec: fakes[spec.name]) as pool:
        watch = V.Watch(inv, pool, scope, clock=lambda: now[0])
        first = watch.refresh()
        # from the anchor: BASE + N - 29.5 .. now holds the last 29 requests
        assert first.window == (BASE + N - 29.5, BASE + N + 1.0)
        assert first.online_requests == 29
        now[0] += 5.0
        second = watch.refresh()
    # from the second read on, the last 20 s before each read: BASE + N - 14 .. BASE + N + 6
    assert second.window == (BASE + N - 14.0, BASE + N + 6.0)
    assert second.online_requests == 14
