"""tcpcopy ``--workers 2`` (and intercept ``--workers 2``) in the local lab: flows spread over
both workers, >= 99.9 % of the requests copied, one merged stats file equal to the sum of the
workers', no fake tuple used by two connections at once at the target, and a pidfile-based
stop that leaves no worker behind."""

from __future__ import annotations

import collections
import os
import signal
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from engine.packets import SYN, ip_ntoa, parse_ipv4_tcp, strip_ethernet
from engine.pcapfile import read_pcap
from tests.integration.copyrig import Rig, fidelity, read_json, settle, wait_for

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_by_pidfile(rig: Rig, name: str, timeout: float = 20.0) -> List[int]:
    """SIGTERM the pid in ``<name>.pid`` (the parent); returns the workers' pids, after
    checking that the parent and every worker are gone."""
    merged = rig.stats(name)
    workers = [int(w["pid"]) for w in merged.get("per_worker", []) if w.get("pid")]
    pid = int((rig.dir / f"{name}.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    proc = next(p for p in rig.procs if p.pid == pid)
    assert proc.wait(timeout) == 0, (rig.dir / f"{name}.log").read_text()[-3000:]
    assert not (rig.dir / f"{name}.pid").exists()
    wait_for(lambda: not any(_alive(w) for w in workers), 10, f"{name} workers gone")
    return workers


def both_connected(stats: Dict[str, Any], workers: int) -> bool:
    per = stats.get("per_worker") or []
    return (len(per) == workers and all(w.get("state") == "running" for w in per)
            and all(int(i.get("connections", 0)) > 0 for i in stats.get("intercepts") or []))


def check_merged(rig: Rig, name: str, workers: int) -> Dict[str, Any]:
    """The final merged stats file is the sum of the workers' final files."""
    merged = rig.stats(name)
    assert merged["state"] == "exited" and merged["workers"] == workers
    docs = [read_json(Path(f"{rig.dir / name}.json.w{k}")) or {} for k in range(workers)]
    assert all(d.get("state") == "exited" for d in docs), [d.get("state") for d in docs]
    total: Dict[str, int] = collections.Counter()
    for d in docs:
        total.update(d["counters"])
    assert {k: v for k, v in merged["counters"].items() if v} == {
        k: v for k, v in total.items() if v}
    return merged


def syn_tuples(pcap: Path, prefix: str) -> Dict[Tuple[str, int], List[Tuple[float, int]]]:
    """(fake ip, fake port) -> [(time, ISN)] of the SYNs the target received from the pool."""
    out: Dict[Tuple[str, int], List[Tuple[float, int]]] = collections.defaultdict(list)
    for rec in read_pcap(str(pcap)).records:
        try:
            pkt = parse_ipv4_tcp(rec.data, strip_ethernet(rec.data)[1])
        except ValueError:
            continue
        src = ip_ntoa(pkt.ip.src)
        if src.startswith(prefix) and pkt.tcp.flags & SYN:
            out[(src, pkt.tcp.sport)].append((rec.ts, pkt.tcp.seq))
    return out


def assert_no_tuple_collision(tuples: Dict[Tuple[str, int], List[Tuple[float, int]]]) -> None:
    """Two connections on one fake tuple at once would show as SYNs with different ISNs
    close together (a retransmitted SYN keeps its ISN); a tuple used again later is fine."""
    clashes = []
    for key, syns in tuples.items():
        syns.sort()
        for (t1, isn1), (t2, isn2) in zip(syns, syns[1:]):
            if isn1 != isn2 and t2 - t1 < 2.0:
                clashes.append((key, t2 - t1))
    assert not clashes, clashes[:10]


def run_copy(rig: Rig, tcpcopy_workers: int, intercept_workers: int, keepalive: int,
             new: int) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept(extra=["--workers", str(intercept_workers)])
    rig.start_tcpcopy(extra=["--workers", str(tcpcopy_workers), "--intercept-workers",
                             str(intercept_workers)])
    wait_for(lambda: both_connected(rig.stats("tcpcopy"), tcpcopy_workers), 20,
             "every tcpcopy worker connected")
    pcap = rig.dir / "target.pcap"
    tcpdump = rig.spawn("target", ["tcpdump", "-U", "--immediate-mode", "-n", "-i", "eth0",
                                   "-w", str(pcap),
                                   f"tcp[tcpflags] & tcp-syn != 0 and src net {rig.pool}"],
                        "tcpdump")
    wait_for(lambda: pcap.exists(), 10, "tcpdump attached")
    ka = rig.traffic("--requests", str(keepalive), "--mode", "keepalive", "--connections", "4",
                     "--post-sizes", "0,1024,20000", "--seq-query")
    nw = rig.traffic("--requests", str(new), "--mode", "new", "--connections", "4",
                     "--post-sizes", "0,100", "--seq-query")
    assert not ka.get("errors") and not nw.get("errors"), (ka, nw)
    truth = rig.online_truth()
    want = keepalive + new
    assert sum(truth.values()) == want
    copies = settle(rig, want)
    ratio = fidelity(truth, copies)
    live = rig.stats("tcpcopy")
    assert ratio >= 0.999, (ratio, live.get("counters"))
    sent_syn = live["counters"]["sent_syn"]
    wait_for(lambda: sum(map(len, syn_tuples(pcap, rig.fake_prefix).values())) >= sent_syn, 20,
             f"the {sent_syn} SYNs of the copies in the target's capture")
    rig.stop(tcpdump)
    tcp_workers = stop_by_pidfile(rig, "tcpcopy")
    ic_workers = stop_by_pidfile(rig, "intercept")
    assert len(tcp_workers) == tcpcopy_workers
    merged = check_merged(rig, "tcpcopy", tcpcopy_workers)
    if intercept_workers > 1:
        assert len(ic_workers) == intercept_workers
        check_merged(rig, "intercept", intercept_workers)
    else:       # --workers 1: the single process of today, no per-worker files
        assert not ic_workers and not list(rig.dir.glob("intercept.json.w*"))
    per = merged["per_worker"]
    # both workers did work: the kernel spread the flows (hash of each flow's 4-tuple)
    assert all(w["counters"].get("sessions_created", 0) > 0 for w in per), [
        w["counters"].get("sessions_created") for w in per]
    c = merged["counters"]
    assert c["target_resets"] == 0 and c["sessions_refused"] == 0, c
    tuples = syn_tuples(pcap, rig.fake_prefix)
    assert tuples
    by_class = collections.Counter(port % tcpcopy_workers for _ip, port in tuples)
    assert set(by_class) == set(range(tcpcopy_workers)), by_class
    assert_no_tuple_collision(tuples)
    log = (rig.dir / "tcpcopy.log").read_text()
    assert all(f"[w{k}] " in log for k in range(tcpcopy_workers))
    assert "unexpectedly" not in log


def test_two_workers_with_two_intercept_workers(rig: Rig) -> None:
    run_copy(rig, 2, 2, keepalive=1000, new=500)
    listens = rig.stats("intercept")["listens"]
    assert [x.rsplit(":", 1)[1] for x in listens] == ["36524", "36525"]


def test_two_workers_with_one_intercept(rig: Rig) -> None:
    run_copy(rig, 2, 1, keepalive=600, new=300)


def test_a_worker_that_dies_stops_the_others(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(extra=["--workers", "2"])
    wait_for(lambda: both_connected(rig.stats("tcpcopy"), 2), 20, "both workers connected")
    victim, other = (int(w["pid"]) for w in rig.stats("tcpcopy")["per_worker"])
    os.kill(victim, signal.SIGKILL)
    pid = int((rig.dir / "tcpcopy.pid").read_text().strip())
    proc = next(p for p in rig.procs if p.pid == pid)
    assert proc.wait(20) == 1
    assert not _alive(other)
    log = (rig.dir / "tcpcopy.log").read_text()
    assert f"worker 0 (pid {victim}) killed by signal SIGKILL unexpectedly" in log
    assert not (rig.dir / "tcpcopy.pid").exists()
