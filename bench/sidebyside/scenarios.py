"""The four load scenarios and one measured run of a scenario with one copier (or none).

A run: start the copier pair (fresh, so CPU, RSS and counters are per run), read the daemons'
CPU, send the load from the client namespace with a run tag in the URI (``/?<tag>``), then
follow the target's access log from where it stood until the copies stop coming (every request
copied, or no new line for ``quiet`` seconds, or ``limit``). The trail is the time of the last
new copy line minus the end of the client. Then CPU, peak RSS and kernel drops are read and the
pair is stopped. Requests and copies are the lines with the tag in the online and target logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set

from bench.sidebyside import procs
from bench.sidebyside.copiers import Copier
from tests.integration.copyrig import Rig

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scenario:
    name: str
    client: str                 # "paced" (lab traffic generator) or "wrk"
    seconds: float
    connections: int
    mode: str = "keepalive"     # paced: keepalive | new
    rate: int = 0               # paced: requests per second
    close: bool = False         # wrk: send "Connection: close"
    generators: int = 1         # paced: generator processes, each sending rate/generators

    def describe(self) -> str:
        if self.client == "paced":
            gens = f" ({self.generators} generators)" if self.generators > 1 else ""
            return (f"paced {self.rate} req/s {self.mode}, {self.connections} connections"
                    f"{gens}, {self.seconds:g} s")
        hdr = ", Connection: close" if self.close else ", keep-alive"
        return f"wrk -t1 -c{self.connections} -d{self.seconds:g}s{hdr}"


def scenarios(quick: bool) -> List[Scenario]:
    """Full: the issue's four scenarios. Quick (CI smoke): the same four, 1 s each."""
    s = 1.0 if quick else None
    return [
        Scenario("paced-ka", "paced", s or 10.0, 10, "keepalive", 1000),
        Scenario("paced-new", "paced", s or 10.0, 10, "new", 1000),
        Scenario("wrk-c10-ka", "wrk", s or 20.0, 10),
        Scenario("wrk-c50-close", "wrk", s or 10.0, 50, close=True),
    ]


class LogTail:
    """Follows one access log from an offset: new lines and when the last one came."""

    def __init__(self, path: Optional[Path]) -> None:
        if path is None:
            raise ValueError("host has no access log")
        self.path = path
        self.start = self.offset = path.stat().st_size
        self.lines = 0
        self.last_growth = time.monotonic()

    def poll(self) -> int:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        cut = data.rfind(b"\n") + 1
        if cut:
            self.offset += cut
            self.lines += data.count(b"\n", 0, cut)
            self.last_growth = time.monotonic()
        return self.lines

    def tagged(self, tag: str, prefix: str = "") -> int:
        """Lines since the start that carry ``/?<tag>`` (and start with ``prefix``)."""
        needle = f" /?{tag} ".encode()
        start = prefix.encode()
        n = 0
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            for line in fh:
                if needle in line and line.startswith(start):
                    n += 1
        return n


@contextlib.contextmanager
def affinity(cpus: Optional[Set[int]]) -> Iterator[None]:
    """Run the block (and the processes it starts) on ``cpus``; None: leave it as it is."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def client_load(rig: Rig, sc: Scenario, tag: str,
                cpus: Optional[Set[int]] = None) -> Dict[str, Any]:
    """Send the scenario's load (on ``cpus`` if given); the generator's JSON summary or
    wrk's last lines."""
    with affinity(cpus):
        return _client_load(rig, sc, tag)


def paced(rig: Rig, sc: Scenario, tag: str) -> Dict[str, Any]:
    """The lab traffic generator, ``sc.generators`` processes at once, each sending its share
    of the rate, the requests and the connections; their summaries merged (counts and rates
    summed, latency percentiles the largest of the processes'), plus the generators' CPU
    seconds (from this process's reaped-children usage)."""
    k = max(1, sc.generators)
    total = int(sc.rate * sc.seconds)
    conns = max(1, sc.connections // k)
    argv = [*rig.lab.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
            f"http://{rig.online}", "--json", "--mode", sc.mode, "--connections", str(conns),
            "--get-paths", f"/?{tag}"]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gens = []
    for i in range(k):
        share = total // k + (1 if i < total % k else 0)
        gens.append(subprocess.Popen([*argv, "--requests", str(share), "--rate",
                                      str(sc.rate / k), "--seed", str(1 + 1000 * i)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=rig.env, cwd=str(REPO)))
    docs, problems = [], []
    for g in gens:
        try:
            out, err = g.communicate(timeout=sc.seconds * 6 + 60)
        except subprocess.TimeoutExpired:
            g.kill()
            out, err = g.communicate()
        try:
            docs.append(json.loads(out))
        except ValueError:
            problems.append(f"status {g.returncode}: {err.decode(errors='replace')[-200:]}")
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if problems:
        raise RuntimeError("traffic generator failed: " + "; ".join(problems))
    kinds: Counter[str] = Counter()
    for d in docs:
        kinds.update(d.get("error_kinds") or {})
    lats = [d.get("latency_ms") or {} for d in docs]
    return {"ok": sum(d.get("ok", 0) for d in docs),
            "errors": sum(d.get("errors", 0) for d in docs),
            "rate": round(sum(d.get("rate", 0.0) for d in docs), 1),
            "error_kinds": dict(kinds), "generators": k,
            "generator_cpu_s": round(usage1.ru_utime + usage1.ru_stime
                                     - usage0.ru_utime - usage0.ru_stime, 2),
            "latency_ms": {q: max((x[q] for x in lats if x.get(q) is not None), default=None)
                           for q in ("p50", "p99", "p99.9", "max")} if lats else None}


def _client_load(rig: Rig, sc: Scenario, tag: str) -> Dict[str, Any]:
    if sc.client == "paced":
        return paced(rig, sc, tag)
    argv = ["wrk", "-t1", f"-c{sc.connections}", f"-d{sc.seconds:g}s"]
    if sc.close:
        argv += ["-H", "Connection: close"]
    out = rig.ns("client", [*argv, f"http://{rig.online}/?{tag}"]).stdout
    lines = [ln.strip() for ln in out.strip().splitlines()]
    return {"wrk": [ln for ln in lines if ln.startswith(("Requests/sec", "Socket errors",
                                                         "Non-2xx", "Latency"))]}


def wait_copies(tail: LogTail, want: int, quiet: float, limit: float) -> None:
    """Until the target holds ``want`` new lines, or none came for ``quiet`` s, or ``limit``."""
    deadline = time.monotonic() + limit
    while True:
        n = tail.poll()
        now = time.monotonic()
        if n >= want or now - tail.last_growth >= quiet or now >= deadline:
            return
        time.sleep(0.05)


def settled_count(tail: LogTail, tag: str, limit: float = 5.0) -> int:
    """Tagged lines once two counts 0.2 s apart agree (nginx logs a request after answering
    it, so the last lines may land just after the client ends)."""
    deadline = time.monotonic() + limit
    n = tail.tagged(tag)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        again = tail.tagged(tag)
        if again == n:
            break
        n = again
    return n


def per_10k(seconds: float, copied: int) -> Optional[float]:
    return round(seconds / copied * 1e4, 3) if copied else None


def run_one(rig: Rig, sc: Scenario, copier: Optional[Copier], tag: str, quiet: float,
            limit: float, client_cpus: Optional[Set[int]] = None) -> Dict[str, Any]:
    """One measured run; the row of the JSON's ``runs``."""
    row: Dict[str, Any] = {"scenario": sc.name, "side": copier.side if copier else "off",
                           "tag": tag}
    try:
        pids = copier.start(tag) if copier else {}
        online_log = LogTail(rig.lab.host("online").access_log)
        target_log = LogTail(rig.lab.host("target").access_log)
        cpu0 = {k: procs.cpu_tree(p) for k, p in pids.items()}
        wait0 = {k: procs.run_delay_tree(p) for k, p in pids.items()}
        t0 = time.monotonic()
        row["client"] = client_load(rig, sc, tag, client_cpus)
        t_end = time.monotonic()
        target_log.poll()                   # the copies so far; only later lines move the trail
        target_log.last_growth = t_end
        want = online_log.tagged(tag)
        if copier:
            wait_copies(target_log, want, quiet, limit)
        online = settled_count(online_log, tag)
        if copier and online > want:        # nginx logged a few more after the client ended
            wait_copies(target_log, online, quiet, limit)
        cpu1 = {k: procs.cpu_tree(p) for k, p in pids.items()}
        wait1 = {k: procs.run_delay_tree(p) for k, p in pids.items()}
        rss = {k: round(procs.hwm_tree_mb(p), 1) for k, p in pids.items()}
        pss = {k: round(procs.pss_tree_mb(p), 1) for k, p in pids.items()}
        drops = copier.drops_before_stop() if copier else {}
    finally:
        if copier:
            copier.stop()
    row.update(online=online, client_s=round(t_end - t0, 2),
               online_rate=round(online / (t_end - t0), 1) if t_end > t0 else 0.0)
    if not copier:
        return row
    copied = target_log.tagged(tag, rig.fake_prefix)
    drops.update(copier.drops_after_stop(tag))
    per_proc = {k: procs.tree_delta(procs.part_of(cpu0[k]), procs.part_of(cpu1[k]))
                for k in pids}
    cpu = {k: sum(d.values()) for k, d in per_proc.items()}
    system = {k: sum(procs.tree_delta(procs.part_of(cpu0[k], 1),
                                      procs.part_of(cpu1[k], 1)).values()) for k in pids}
    waited = {k: sum(procs.tree_delta(wait0[k], wait1[k]).values()) for k in pids}
    row.update(
        copied=copied, fidelity=round(copied / online, 5) if online else None,
        trail_s=round(max(0.0, target_log.last_growth - t_end), 2),
        kernel_drops=drops,
        cpu_s={k: round(v, 2) for k, v in cpu.items()},
        cpu_s_procs={k: [round(v, 2) for _, v in sorted(d.items())] for k, d in per_proc.items()},
        cpu_s_per_10k={k: per_10k(v, copied) for k, v in cpu.items()},
        sys_s_per_10k={k: per_10k(v, copied) for k, v in system.items()},
        # runnable but waiting for the CPU, from the load's start until the copies stopped
        run_delay_s={k: round(v, 2) for k, v in waited.items()},
        cpu_s_per_10k_online={k: per_10k(v, online) for k, v in cpu.items()},
        rss_mb=rss, pss_mb=pss, tcpcopy_counters=copier.final_counters(tag),
    )
    return row


def describe_all(quick: bool) -> Dict[str, Any]:
    return {sc.name: {**asdict(sc), "what": sc.describe()} for sc in scenarios(quick)}
