"""verify's remote reads against FakeTransport: only new bytes, rotation, time-bounded reads,
and a whole verify run (fan-in of two online hosts) on scripted hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.hosts import journal as jr
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import HostSpec
from labctl.transport.base import Result
from labctl.transport.fake import FakeTransport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as V
from labctl.verify import logparse as lp

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
LINES = (LOGS / "labctl.log").read_text().splitlines(keepends=True)
FMT = lp.LogFormat("labctl")
SPEC = HostSpec(name="online", address="10.77.1.10")  # type: ignore[arg-type]


class Disk:
    """Files on a fake host: `stat -c` and `tail -c +N` answered from memory."""

    def __init__(self, t: FakeTransport) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}
        t.on_prefix(["stat", "-c", "%n %s %i"], handler=self.stat)
        t.on_prefix(["tail", "-c"], handler=self.tail)
        self.t = t

    def stat(self, argv: tuple[str, ...]) -> Result:
        out = [f"{p} {len(self.files[p][0])} {self.files[p][1]}" for p in argv[3:]
               if p in self.files]
        code = 0 if len(out) == len(argv) - 3 else 1
        return Result(self.t.host, argv, code, "".join(o + "\n" for o in out), "")

    def tail(self, argv: tuple[str, ...]) -> Result:
        start = int(argv[2].lstrip("+")) - 1
        return Result(self.t.host, argv, 0, self.files[argv[3]][0][start:].decode(), "")


def test_reads_only_bytes_after_the_mark() -> None:
    t = FakeTransport("online")
    disk = Disk(t)
    data = "".join(LINES).encode()
    disk.files["/l"] = (data, 7)
    mark = V.LogMark("online", "/l", len("".join(LINES[:10]).encode()), 7)
    got = V.fetch_log(t, SPEC, "/l", FMT, mark, None)
    assert len(got.result.records) == 3 and got.end.offset == len(data)
    assert ("tail", "-c", f"+{mark.offset + 1}", "/l") in t.commands
    assert not any(c[0] == "cat" for c in t.commands)


def test_follows_rotation_into_dot_one() -> None:
    t = FakeTransport("online")
    disk = Disk(t)
    old = "".join(LINES[:8]).encode()
    disk.files["/l.1"] = (old, 7)
    disk.files["/l"] = ("".join(LINES[8:]).encode(), 9)
    mark = V.LogMark("online", "/l", len("".join(LINES[:5]).encode()), 7)
    got = V.fetch_log(t, SPEC, "/l", FMT, mark, None)
    assert len(got.result.records) == 8
    assert got.end.inode == 9 and got.end.offset == len(disk.files["/l"][0])


def test_time_bounded_read_grows_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    t = FakeTransport("online")
    disk = Disk(t)
    base = 1795764745
    lines = [f'10.78.1.10 [{_iso(base + i)}] "GET /n{i} HTTP/1.1" 200 6 79 "-" 0.000 {i} 1 "x"\n'
             for i in range(200)]
    disk.files["/l"] = ("".join(lines).encode(), 3)
    monkeypatch.setattr(V, "FIRST_CHUNK", 1000)
    got = V.fetch_log(t, SPEC, "/l", FMT, None, float(base + 150))
    assert [r.uri for r in got.result.records][:1] == ["/n150"]
    assert len(got.result.records) == 50 and got.result.malformed == 0
    reads = [c for c in t.commands if c[0] == "tail"]
    assert len(reads) == 2 and reads[-1][2] != "+1"  # never the whole file


def _iso(t: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


INVENTORY = """
lab: h6u
hosts:
  online:
    - {name: on1, address: 10.77.1.10}
    - {name: on2, address: 10.77.1.11}
  target: {name: target, address: 10.77.1.20}
  assistant: {name: assistant, address: 10.77.1.30}
services: [{port: 80, target_port: 80}]
clients: {pool: [10.79.1.x], networks: [10.79.1.0/24], real_networks: [10.78.1.0/24]}
logs:
  online: {path: /log/online.log, format: labctl}
  target: {path: /log/target.log, format: labctl}
state_dir: /state
"""


def test_verify_run_fan_in_on_fake_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    inv = parse_inventory(INVENTORY)
    fakes = {n: FakeTransport(n) for n in ("on1", "on2", "target", "assistant")}
    disks = {n: Disk(f) for n, f in fakes.items()}
    on_lines = [ln.replace("127.0.0.1", "10.78.1.10") for ln in LINES]
    disks["on1"].files["/log/online.log"] = ("".join(on_lines[:7]).encode(), 1)
    disks["on2"].files["/log/online.log"] = ("".join(on_lines[7:]).encode(), 2)
    copies = [ln.replace("127.0.0.1", "10.79.1.7") for ln in LINES]
    disks["target"].files["/log/target.log"] = ("".join(copies[:-1]).encode(), 3)
    for f in fakes.values():
        f.on(["cat", *V.CONNTRACK], stdout="10\n1000\n")
        f.on_regex(r"^cat /state/h6u/\w+/journal.json$", exit_code=1, stderr="No such file")
    # intercept on the assistant: journal copy kept locally by `up`, stats file, live pid
    journal = jr.new_journal("h6u", "assistant", "run1", now=1.0)
    journal.daemons.append(jr.DaemonRecord("intercept", ["intercept"], "/s/i.pid",
                                           "/s/i.stats", "/s/i.log"))
    jr.save_local(journal)
    stats = {"tool": "intercept", "state": "running", "updated_at": 99.0,
             "counters": {"resp_routed": 5}}
    a = fakes["assistant"]
    a.on(["cat", "/s/i.stats"], stdout=json.dumps(stats))
    a.on(["cat", "/s/i.pid"], stdout="4242\n")
    cmdline = "python3\0x.pyz\0intercept\0--stats-file\0/s/i.stats"
    a.on(["cat", "/proc/4242/cmdline"], stdout=cmdline)
    V.save_marks(V.Marks("h6u", 1.0, [
        V.LogMark("on1", "/log/online.log", 0, 1), V.LogMark("on2", "/log/online.log", 0, 2),
        V.LogMark("target", "/log/target.log", 0, 3)], {"target": 4}))
    scope = V.resolve_scope(inv, since_up=True, window=None)
    assert scope.marks is not None
    with HostPool(inv, factory=lambda spec: fakes[spec.name]) as pool:
        report = V.run_verify(inv, pool, scope, clock=lambda: 100.0)
    assert report.online_by_host == {"on1": 7, "on2": 6}
    assert report.target_matched == 12 and report.attribution.missing == 1
    assert not report.verdict.passed and report.leaks == 0
    assert [c.count_at_up for c in report.conntrack] == [None, None, 4]
    assert [(d.host, d.tool, d.state, d.counters) for d in report.daemons] == [
        ("assistant", "intercept", "running", {"resp_routed": 5})]
    reads = [c for f in fakes.values() for c in f.commands if c[0] == "tail"]
    assert sorted(reads) == sorted([("tail", "-c", "+1", "/log/online.log")] * 2
                                   + [("tail", "-c", "+1", "/log/target.log")])


def test_short_reads_from_the_transport_are_resumed() -> None:
    t = FakeTransport("online")
    disk = Disk(t)
    data = "".join(LINES).encode()
    disk.files["/l"] = (data, 7)
    full = disk.tail

    def short(argv: tuple[str, ...]) -> Result:  # every read cut at 300 bytes
        res = full(argv)
        return Result(res.host, res.argv, 0, res.stdout[:300], "")

    t.on_prefix(["tail", "-c"], handler=short)
    got = V.fetch_log(t, SPEC, "/l", FMT, V.LogMark("online", "/l", 0, 7), None)
    assert len(got.result.records) == 13 and got.end.offset == len(data)
    assert len([c for c in t.commands if c[0] == "tail"]) == -(-len(data) // 300)


def _lines(base: int, lo: int, hi: int) -> bytes:
    return "".join(f'10.78.1.10 [{_iso(base + i)}] "GET /n{i} HTTP/1.1" 200 6 79 "-" 0.000 {i} 1'
                   f' "x"\n' for i in range(lo, hi)).encode()


@pytest.mark.parametrize("new_lines", [0, 40])
def test_time_bounded_read_follows_rotation(monkeypatch: pytest.MonkeyPatch,
                                            new_lines: int) -> None:
    """Rotated after the start (mv + reopen): the older records are in `.1`; none is lost or
    counted twice, and the next read starts at the end of the new file."""
    t = FakeTransport("online")
    disk = Disk(t)
    base = 1795764745
    disk.files["/l.1"] = (_lines(base, 0, 200), 3)
    disk.files["/l"] = (_lines(base, 200, 200 + new_lines), 4)
    monkeypatch.setattr(V, "FIRST_CHUNK", 1000)
    got = V.fetch_log(t, SPEC, "/l", FMT, None, float(base + 150))
    assert [r.uri for r in got.result.records] == [f"/n{i}" for i in range(150, 200 + new_lines)]
    assert got.end == V.LogMark("online", "/l", len(disk.files["/l"][0]), 4)
    assert ("tail", "-c", "+1", "/l.1") not in t.commands  # .1 read backwards too


def test_time_bounded_read_ignores_dot_one_when_not_needed() -> None:
    t = FakeTransport("online")
    disk = Disk(t)
    base = 1795764745
    disk.files["/l.1"] = (_lines(base, 0, 100), 3)
    disk.files["/l"] = (_lines(base, 100, 200), 4)
    got = V.fetch_log(t, SPEC, "/l", FMT, None, float(base + 150))
    assert len(got.result.records) == 50
    assert not any(c[0] == "tail" and c[-1] == "/l.1" for c in t.commands)
