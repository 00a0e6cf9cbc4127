"""Many hosts at once (issue 12): the pool's `--parallel` bound and per-host phase watcher, `up`'s
stages across hosts (every host's outcome kept when one fails), the poll backoff, and the live
per-host table's rendering."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from labctl.cli.render.hosts import HostBoard
from labctl.errors import RemoteError
from labctl.hosts.daemons import Poller
from labctl.inventory.load import load_inventory
from labctl.model import Change, ChangeKind
from labctl.transport import FakeTransport
from labctl.transport.pool import HostPool, run_parallel
from labctl.up.fanout import by_host, first_failure, hosts_error, run_stage

ROOT = Path(__file__).resolve().parents[2]


def _pool(parallel: int | None = None, watch: Any = None) -> HostPool:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    return HostPool(inv, lambda spec: FakeTransport(spec.name), parallel, watch)


def test_parallel_bounds_how_many_hosts_run_at_once() -> None:
    lock, running, peak = threading.Lock(), [0], [0]
    gate = threading.Event()

    def work(item: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == 2:
                gate.set()
        gate.wait(timeout=5)   # the first two wait for each other: both run at once
        with lock:
            running[0] -= 1
        return item

    items = {f"h{i}": i for i in range(12)}
    out = run_parallel(items, work, max_workers=2)
    assert peak[0] == 2 and [o.value for o in out.values()] == list(range(12))


def test_all_hosts_really_run_at_once_within_the_bound() -> None:
    barrier = threading.Barrier(6, timeout=10)   # breaks (error) unless 6 run together
    out = run_parallel({f"h{i}": i for i in range(6)}, lambda i: barrier.wait() >= 0,
                       max_workers=32)
    assert all(o.ok and o.value for o in out.values())


def test_pool_default_bound_and_watcher_hears_each_host_and_phase() -> None:
    events: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def watch(host: str, phase: str, state: str) -> None:
        with lock:
            events.append((host, phase, state))

    assert _pool().parallel == 32 and _pool(parallel=4).parallel == 4
    pool = _pool(watch=watch)
    pool.connect_all()

    def fail_target(spec: Any, t: FakeTransport) -> str:
        if spec.name == "target":
            raise RemoteError("no", host=spec.name)
        return spec.name

    out = pool.each(fail_target, phase="facts")
    assert not out["target"].ok and out["online1"].value == "online1"
    for host in pool.specs:
        mine = [(p, s) for h, p, s in events if h == host]
        want_facts = "failed" if host == "target" else "ok"
        assert mine == [("connect", "running"), ("connect", "ok"), ("facts", "running"),
                        ("facts", want_facts)]


def _change(host: str, step: str) -> Change:
    return Change(host, step, ChangeKind.ROUTE, step, apply=(("true",),), undo=(("true",),))


def test_stage_keeps_every_hosts_outcome_when_one_fails() -> None:
    changes = [_change("a", "1"), _change("b", "1"), _change("a", "2"), _change("c", "1"),
               _change("b", "2")]
    assert {h: [c.step for c in cs] for h, cs in by_host(changes).items()} == {
        "a": ["1", "2"], "b": ["1", "2"], "c": ["1"]}
    done: list[tuple[str, str]] = []
    lock = threading.Lock()

    def do(change: Change) -> None:
        if change.host == "b" and change.step == "1":
            raise RemoteError("route refused", host="b")
        with lock:
            done.append((change.host, change.step))

    out = run_stage(_pool(), "apply", changes, do)
    assert set(out) == {"a", "b", "c"}
    assert out["a"].ok and out["c"].ok and not out["b"].ok
    assert sorted(done) == [("a", "1"), ("a", "2"), ("c", "1")]  # b stopped at its failure
    assert done.index(("a", "1")) < done.index(("a", "2"))       # each host in plan order
    err = first_failure(out)
    assert isinstance(err, RemoteError) and err.host == "b"
    both = hosts_error({"b": "route refused", "online7": "tcpcopy exited"}, hint="see logs")
    assert "up failed on 2 hosts" in both.message
    assert "[b] route refused" in both.message and "[online7] tcpcopy exited" in both.message


def test_poller_backs_off_up_to_its_cap() -> None:
    t = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(round(s, 4))
        t[0] += s

    checks = iter([False] * 7 + [True])
    Poller(clock=lambda: t[0], sleep=sleep).until("x", "h", 30, lambda: next(checks))
    assert waits == [0.1, 0.15, 0.225, 0.3375, 0.5, 0.5, 0.5]
    with pytest.raises(RemoteError, match="timed out after 1s waiting for y"):
        Poller(clock=lambda: t[0], sleep=sleep).until("y", "h", 1, lambda: False)


def test_host_board_lines_and_table() -> None:
    board = HostBoard(["online", "target"])
    board.update("online", "ship", "running", now=10.0)
    board.update("online", "ship", "ok", now=10.5)
    board.update("target", "apply", "running", now=10.0)
    board.update("target", "apply", "failed", now=11.0)
    board.update("target", "rollback", "running", now=11.0)
    assert board.line("online", now=11.0) == "[online] ship: ok (0.5s)"
    assert board.line("target", now=12.0) == "[target] rollback: running (1.0s), failed in apply"
    assert board.counts() == {"ok": 1, "running": 1}
    console = Console(width=80, record=True)
    console.print(board.table(now=12.0, title="up"))
    text = console.export_text()
    assert "up (1 ok, 1 running)" in text
    assert "target" in text and "failed in apply" in text and "rollback" in text
