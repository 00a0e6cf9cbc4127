"""--workers: flags, the fake-port residue classes, the intercept residue filter, the stats
merge, the shared log and the parent process (real forks of tiny workers)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest

from engine import bpf
from engine.intercept import main as intercept_main
from engine.options import OptionsError, parse_tcpcopy_args
from engine.options.intercept import UsageError, parse_args
from engine.packets import ACK, SYN, ip_aton
from engine.rawsock import attach_filter
from engine.session.config import MAX_PORT_TRIES, AddressMapper, residue_port
from engine.session.packets import build_packet
from engine.stats import Logger
from engine.tcpcopy import main as tcpcopy_main
from engine.workers import merge_stats, supervise, worker_path
from engine.workers.intercept import worker_options as intercept_worker_options
from engine.workers.process import StatsSpec, start_line
from engine.workers.tcpcopy import fanout_group
from engine.workers.tcpcopy import worker_options as tcpcopy_worker_options

BASE = ["-x", "80-10.77.1.20:80", "-s", "10.77.1.30"]


# ---------------------------------------------------------------------------- flags


@pytest.mark.parametrize(("argv", "flag"), [
    (["--workers", "0"], "--workers"),
    (["--workers", "65"], "--workers"),
    (["--workers", "4", "--intercept-workers", "3"], "--intercept-workers"),
    (["--intercept-workers", "2"], "--intercept-workers"),      # 2 does not divide 1
    (["--workers", "2", "--pcap", "x.pcap"], "--workers"),
    (["-s", "10.77.1.31:65535", "--workers", "2", "--intercept-workers", "2"],
     "--intercept-workers"),
])
def test_tcpcopy_worker_flag_errors_name_the_flag(argv: List[str], flag: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionsError, match=flag):
        parse_tcpcopy_args(BASE + argv)
    assert tcpcopy_main(BASE + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err


def test_tcpcopy_worker_flags_and_per_worker_options() -> None:
    opts = parse_tcpcopy_args([*BASE, "-s", "10.77.1.31:4000", "--workers", "4",
                               "--intercept-workers", "2", "--stats-file", "/tmp/s.json"])
    assert (opts.workers, opts.intercept_workers) == (4, 2)
    assert parse_tcpcopy_args(BASE).workers == 1
    ports = [[p for _h, p in tcpcopy_worker_options(opts, k, 7).intercepts] for k in range(4)]
    assert ports == [[36524, 4000], [36525, 4001], [36524, 4000], [36525, 4001]]
    w3 = tcpcopy_worker_options(opts, 3, 7)
    assert (w3.worker, w3.fanout_group, w3.pid_file, w3.stats_file) == (3, 7, None,
                                                                         "/tmp/s.json.w3")


@pytest.mark.parametrize(("argv", "flag"), [
    (["--workers", "0"], "--workers"), (["--workers", "x"], "--workers"),
    (["--workers", "65"], "--workers"), (["-p", "65535", "--workers", "2"], "--workers"),
])
def test_intercept_worker_flag_errors(argv: List[str], flag: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match=flag):
        parse_args(["-F", "tcp and src port 80", *argv])
    assert intercept_main(["-F", "tcp and src port 80", *argv]) == 2
    assert flag in capsys.readouterr().err


def test_intercept_port_per_worker() -> None:
    opts = parse_args(["-F", "tcp and src port 80", "-p", "5000", "--workers", "3",
                       "--stats-file", "st.json", "-P", "i.pid"])
    assert opts is not None and opts.workers == 3
    ws = [intercept_worker_options(opts, j) for j in range(3)]
    assert [w.port for w in ws] == [5000, 5001, 5002]
    assert [w.stats_file for w in ws] == ["st.json.w0", "st.json.w1", "st.json.w2"]
    assert all(w.pid_file is None and w.workers == 3 for w in ws)


def test_fanout_group_depends_on_pid_and_interface() -> None:
    assert fanout_group(1234, "lo") != fanout_group(1235, "lo")
    assert fanout_group(1234, "lo") == fanout_group(1234 + 65536, "lo") & 0xFFFF
    assert 0 <= fanout_group(99999, None) <= 0xFFFF


# ---------------------------------------------------------------------------- port classes


def test_residue_port_is_the_nearest_port_of_the_class() -> None:
    for count in (1, 2, 3, 5, 64):
        for index in range(count):
            for port in [1, 2, 1023, 1024, 65534, 65535, *random.sample(range(1, 65536), 50)]:
                got = residue_port(port, index, count)
                assert 1 <= got <= 65535 and got % count == index
                near = range(max(1, port - count), min(65535, port + count) + 1)
                best = min(abs(p - port) for p in near if p % count == index)
                assert abs(got - port) == best


def old_allocate(m: AddressMapper, ip: int, port: int, replica: int) -> int:
    """The single-process allocator before --workers (for the "exactly as today" check)."""
    fip = m.fake_ip(ip, replica)
    pref = m.preferred_port(port, replica)
    key = (fip << 16) | pref
    if key not in m.used:
        m.used.add(key)
        return key
    for cand_ip in [fip] + [p for p in m.pool if p != fip]:
        for i in range(1, MAX_PORT_TRIES):
            cand = (cand_ip << 16) | (1024 + (pref - 1024 + i * 97) % 64512)
            if cand not in m.used:
                m.used.add(cand)
                return cand
    raise AssertionError("none free")


def test_one_worker_allocates_exactly_as_before() -> None:
    rnd = random.Random(5)
    pool = [ip_aton("10.79.0.1"), ip_aton("10.79.0.2")]
    a, b = AddressMapper(pool, 3, 77), AddressMapper(pool, 3, 77)
    for _ in range(3000):
        ip, port, rep = rnd.choice([1, 2, 3]), rnd.choice([5, 1024, 40000, 40001]), rnd.randrange(3)
        assert a.allocate(ip, port, rep) == old_allocate(b, ip, port, rep)


@pytest.mark.parametrize("count", [2, 3, 4, 7, 64])
def test_workers_never_hand_out_the_same_fake_tuple(count: int) -> None:
    """Property: whatever the clients (also all on one port, forcing the fallback search),
    worker k only uses ports of class k, never twice while live, so no tuple is shared."""
    rnd = random.Random(count)
    pool = [ip_aton("10.79.0.1"), ip_aton("10.79.0.2")]
    seen: Dict[int, int] = {}
    for k in range(count):
        m = AddressMapper(pool, rnd.choice([0, 5]), rnd.randrange(512))
        m.set_worker(k, count)
        live: Set[int] = set()
        for n in range(1500):
            ip = ip_aton("192.168.0.1") + rnd.randrange(3)
            port = 40000 if n % 3 == 0 else rnd.randrange(1, 65536)
            key = m.allocate(ip, port, rnd.randrange(2))
            assert key is not None
            assert (key & 0xFFFF) % count == k and key not in live
            assert seen.setdefault(key, k) == k, "a tuple of another worker"
            live.add(key)
            if rnd.random() < 0.3:
                gone = rnd.choice(sorted(live))
                live.discard(gone)
                m.release(gone)


def test_a_full_class_is_refused_not_leaked_into_another() -> None:
    m = AddressMapper([ip_aton("10.79.0.1")])
    m.set_worker(1, 64)
    keys = [m.allocate(1, 50000, 0) for _ in range(1100)]
    got = [k for k in keys if k is not None]
    assert len(got) == len(set(got)) == 1008        # ports 1025, 1089, ... 65473 of class 1
    assert all((k & 0xFFFF) % 64 == 1 for k in got)
    assert keys[-1] is None


# ---------------------------------------------------------------------------- residue filter

CLIENT, TARGET = ip_aton("10.79.1.7"), ip_aton("10.77.1.20")
ETH = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"


def response(dport: int, sport: int = 80, vlan: bool = False) -> bytes:
    ip = build_packet(TARGET, CLIENT, 1, sport, dport, 1, 2, SYN | ACK, 502, b"", b"x", 0)
    eth = ETH[:12] + b"\x81\x00\x00\x07\x08\x00" if vlan else ETH
    return eth + ip


@pytest.mark.parametrize("count", [2, 3, 4])
def test_residue_filter_splits_responses_by_destination_port(count: int) -> None:
    base = bpf.filter_for_expression("tcp and src port 80")
    progs = [bpf.residue_filter(base, count, j) for j in range(count)]
    for dport in [1, 2, 1024, 1025, 40001, 65535, *random.sample(range(1, 65536), 40)]:
        for vlan in (False, True):
            hits = [j for j, p in enumerate(progs) if bpf.run_filter(p, response(dport, vlan=vlan))]
            assert hits == [dport % count]
            assert not any(bpf.run_filter(p, response(dport, 81, vlan)) for p in progs)
    assert not bpf.run_filter(progs[0], ETH + b"\x45")         # too short: rejected
    assert bpf.residue_filter(base, 1, 0) == base


def test_residue_filter_of_a_tcpdump_style_program_and_the_kernel_accepts_it() -> None:
    # jumps over the replaced returns keep their offsets: a program with RETs in the middle
    prog = [(0x28, 0, 0, 12), (0x15, 0, 1, 0x0800), (0x06, 0, 0, 65535), (0x06, 0, 0, 0)]
    out = bpf.residue_filter(prog, 2, 1)
    assert bpf.run_filter(out, response(1001)) == 65535
    assert bpf.run_filter(out, response(1000)) == 0
    with pytest.raises(bpf.BpfError, match="computed"):
        bpf.residue_filter([(0x16, 0, 0, 0)], 2, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:    # the kernel's verifier
        attach_filter(s, bpf.residue_filter(bpf.tcp_port_filter([80], [], "src"), 4, 3))


# ---------------------------------------------------------------------------- stats merge


def doc(pid: int, sent: int, active: int, addr: str, conns: int) -> Dict[str, object]:
    return {"tool": "tcpcopy", "pid": pid, "state": "running", "updated_at": 1.0,
            "counters": {"sent": sent, "captured": 2 * sent}, "sessions_active": active,
            "intercepts": [{"addr": addr, "connections": conns, "authenticated": True}],
            "target_response_ms": {"count": sent, "mean": 2.0, "p50": 1, "p90": 3, "p99": 4,
                                   "max": 5.0, "buckets": {"1": sent}},
            "copy_delay_ms": {"count": sent, "mean": 0.5, "p50": 0.1, "p90": 1, "p99": pid,
                              "max": pid, "last": 0.2 * pid, "buckets": {"0.1": sent}}}


def test_merge_sums_counters_and_gauges_and_keeps_per_worker() -> None:
    docs = [doc(11, 5, 2, "10.0.0.1:36524", 2), doc(12, 7, 1, "10.0.0.1:36525", 2),
            doc(13, 1, 0, "10.0.0.1:36524", 1)]
    m = merge_stats("tcpcopy", "1.0", 10, 0.0, 2.0, "running", docs)
    assert m["counters"] == {"sent": 13, "captured": 26}
    assert (m["pid"], m["workers"], m["sessions_active"]) == (10, 3, 3)
    assert m["intercepts"] == [
        {"addr": "10.0.0.1:36524", "connections": 3, "authenticated": True},
        {"addr": "10.0.0.1:36525", "connections": 2, "authenticated": True}]
    assert m["target_response_ms"]["count"] == 13 and m["target_response_ms"]["buckets"] == {
        "1": 13}
    delay = m["copy_delay_ms"]            # counts summed, the worst worker's quantiles
    assert (delay["count"], delay["buckets"], delay["p99"], delay["max"]) == (13, {"0.1": 13},
                                                                              13, 13)
    assert delay["last"] == 2.6 and "last" not in m["target_response_ms"]
    assert [w["pid"] for w in m["per_worker"]] == [11, 12, 13]
    assert m["per_worker"][1]["counters"]["sent"] == 7
    assert set(m) >= {"tool", "version", "started_at", "updated_at", "state", "counters"}


# ---------------------------------------------------------------------------- log


def test_worker_log_lines_are_tagged_and_follow_the_parents_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "t.log")
    clock = [100.0]
    parent = Logger(path, max_bytes=200)
    worker = Logger(path, tag="[w1]", follow=True, clock=lambda: clock[0], max_bytes=10)
    for _ in range(10):
        worker.notice("hello")                 # past both max_bytes: the worker never rotates
    assert not os.path.exists(path + ".1")
    parent.rotate_shared()                     # the parent does
    assert os.path.exists(path + ".1")
    clock[0] += 2.0
    worker.notice("after")
    parent.close()
    worker.close()
    old = Path(path + ".1").read_text()
    assert "[notice] [w1] hello" in old
    assert "[notice] [w1] after" in Path(path).read_text()


# ---------------------------------------------------------------------------- parent process


def _wait(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.02)


def _stats_worker(stats: str, fail: int):  # type: ignore[no-untyped-def]
    def run(k: int) -> int:
        with open(worker_path(stats, k) + ".tmp", "w") as fh:
            json.dump({"pid": os.getpid(), "state": "running", "counters": {"n": k + 1}}, fh)
        os.replace(worker_path(stats, k) + ".tmp", worker_path(stats, k))
        if k == fail:
            return 3
        signal.pause()          # until the parent stops it
        return 0
    return run


def _fork_parent(tmp_path: Path, stats: str, run: Any, tool: str = "tcpcopy") -> int:
    """A workers parent of 2 running `run`, in a child of pytest (its pid)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = supervise(2, run, Logger(str(tmp_path / "p.log")),
                             StatsSpec(tool, "1", stats, 0.05))
        finally:
            os._exit(code)
    return pid


def test_parent_stops_everyone_when_a_worker_fails(tmp_path: Path) -> None:
    stats = str(tmp_path / "s.json")
    log_path = tmp_path / "p.log"
    log = Logger(str(log_path))
    t0 = time.monotonic()
    code = supervise(3, _stats_worker(stats, 1), log, StatsSpec("tcpcopy", "1", stats, 0.05))
    log.close()
    assert code == 1 and time.monotonic() - t0 < 8
    text = log_path.read_text()
    assert "worker 1 (pid" in text and "exited with code 3 unexpectedly" in text
    merged = json.loads(Path(stats).read_text())
    assert merged["state"] == "failed" and merged["workers"] == 3


def test_parent_forwards_sigterm_and_merges(tmp_path: Path) -> None:
    stats = str(tmp_path / "s.json")
    pid = _fork_parent(tmp_path, stats, _stats_worker(stats, -1), "intercept")
    try:
        _wait(Path(stats))
        merged = json.loads(Path(stats).read_text())
        assert merged["counters"] == {"n": 3} and merged["state"] == "running"
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert json.loads(Path(stats).read_text())["state"] == "exited"
        assert "killed by signal SIGTERM" in (tmp_path / "p.log").read_text()
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_stale_worker_files_of_a_killed_run_are_not_merged(tmp_path: Path) -> None:
    """A restarted daemon (a supervisor's restart after a kill -9) finds the workers' files of
    the run that died; until its own worker k writes, file k is not merged."""
    stats = str(tmp_path / "s.json")
    for k in range(2):
        Path(worker_path(stats, k)).write_text(json.dumps(
            {"pid": 999_999_999, "state": "running", "counters": {"n": 100}}))
    run_stats = _stats_worker(stats, -1)

    def late(k: int) -> int:        # worker 1 writes its first file after a few merges
        if k == 1:
            time.sleep(0.5)
        return run_stats(k)

    pid = _fork_parent(tmp_path, stats, late)
    try:
        _wait(Path(stats))
        merged = json.loads(Path(stats).read_text())
        assert merged["counters"] == {"n": 3}, merged
        assert 999_999_999 not in [w["pid"] for w in merged["per_worker"]]
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def test_drop_outgoing_rejects_what_this_host_sends_and_the_kernel_accepts_it() -> None:
    prog = bpf.drop_outgoing(bpf.tcp_port_filter([80], [], "src"))
    frame = response(40000)
    assert bpf.run_filter(prog, frame) and bpf.run_filter(prog, frame, pkttype=3)
    assert not bpf.run_filter(prog, frame, pkttype=bpf.PACKET_OUTGOING)
    assert not bpf.run_filter(prog, response(40000, 81))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        attach_filter(s, prog)


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    stats = str(tmp_path / "s.json")
    pid = _fork_parent(tmp_path, stats, _stats_worker(stats, -1))
    try:
        _wait(Path(stats))
        workers = [w["pid"] for w in json.loads(Path(stats).read_text())["per_worker"]]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    def alive(p: int) -> bool:     # an exited orphan may stay a zombie until init reaps it
        try:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers):
        assert time.monotonic() < deadline, "a worker outlived its killed parent"
        time.sleep(0.05)


def test_no_worker_passes_the_start_line_before_all_arrived(tmp_path: Path) -> None:
    def run(k: int) -> int:
        line = start_line()
        assert line is not None
        time.sleep(0.3 * k)
        arrived = time.time()
        line.arrive()
        ok = line.passed(10.0)
        tmp = tmp_path / f".w{k}"
        tmp.write_text(json.dumps([arrived, time.time(), ok]))
        tmp.rename(tmp_path / f"w{k}")          # whole, or not there
        # exit only once every worker wrote its file: the first worker to exit makes the
        # parent stop the others, which must not cut their writes short
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not all(
                (tmp_path / f"w{i}").exists() for i in range(3)):
            time.sleep(0.01)
        return 0

    log = Logger(str(tmp_path / "p.log"))
    assert supervise(3, run, log, StatsSpec("tcpcopy", "1", None, 0.05), with_line=True) == 0
    log.close()
    got = [json.loads((tmp_path / f"w{k}").read_text()) for k in range(3)]
    assert all(ok for _a, _p, ok in got)
    assert min(p for _a, p, _ok in got) >= max(a for a, _p, _ok in got)
    assert start_line() is None         # (this process is no worker)
