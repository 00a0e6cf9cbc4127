"""F2: hostile frames (scapy, inside the lab) on the online link during a live copy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from tests.integration.copyrig import REPO, Rig, fidelity, settle, wait_for
from tests.integration.reliability.measure import (
    Sampler,
    alive,
    counters,
    finish,
    generator,
    live_ports,
    pid_of,
    quiet_counters,
)

# Injector run inside a lab namespace: argv[1] = JSON spec; prints {"sent": {kind: n},
# "passed": {kind: n}} (passed: what tcpcopy's kernel filter lets through).
INJECT = r"""
import json, random, sys
from scapy.all import (IP, TCP, Ether, Raw, IPOption_NOP, IPOption_Router_Alert, conf,
                       fragment, raw, sniff)
conf.verb = 0
spec = json.loads(sys.argv[1])
rnd = random.Random(7)
O, port, n = spec["online"], spec["port"], spec["n"]
# which packets tcpcopy's kernel filter lets through (it drops pure ACKs, so also malformed
# packets that look like one): the engine's own filter, run on the frame online receives
from engine.bpf import run_filter, tcp_port_filter
FILT = tcp_port_filter([port], skip_pure_acks=True)
passed = {}
def reaches(kind, ip_bytes):
    if run_filter(FILT, b"\x02" * 12 + b"\x08\x00" + ip_bytes):
        passed[kind] = passed.get(kind, 0) + 1
sent = {}

def tcp(src, sport, **kw):
    return IP(src=src, dst=O) / TCP(sport=sport, dport=port, **kw)

if spec["mode"] == "l3":
    s = conf.L3socket()
    def out(kind, pkt):
        s.send(pkt)
        sent[kind] = sent.get(kind, 0) + 1
        reaches(kind, raw(pkt))
    a, b, c, d, e = spec["sources"]
    for i in range(n):
        p = 20000 + i
        # counted as malformed by tcpcopy
        out("m_doff2", tcp(a, p, flags="PA", dataofs=2, seq=rnd.getrandbits(32)) / Raw(b"x" * 8))
        out("m_doff15", tcp(a, p, flags="PA", dataofs=15, seq=1))
        trunc = raw(TCP(sport=p, dport=port, flags="S"))[:10]
        out("m_trunc_tcp", IP(src=a, dst=O, proto=6) / Raw(trunc))
        # filtered in the kernel (no TCP ports to read): never reaches the engine
        out("k_zero_len", IP(src=a, dst=O, proto=6))
        # first fragments are counted as frag, later fragments filtered in the kernel
        for f in fragment(tcp(b, p, flags="S", seq=i) / Raw(b"F" * 2400), fragsize=1000):
            out("frag_first" if f.frag == 0 else "k_frag_rest", f)
        # RST / FIN / bare ACK with random seqs on tuples nobody opened
        out("rst_random", tcp(b, 40000 + i, flags="R", seq=rnd.getrandbits(32)))
        out("fin_random", tcp(b, 40000 + i, flags="FA", seq=rnd.getrandbits(32),
                                ack=rnd.getrandbits(32)))
        out("ack_zero", tcp(b, 40000 + i, flags="A", seq=rnd.getrandbits(32)))
        # SYNs with absurd / bogus options and IPv4 options (sessions the target answers)
        opts = [[("MSS", 0)], [("MSS", 65535), ("WScale", 255)], [("WScale", 200)],
                [("SAck", b"")], [(8, b"\x01")]][i % 5]
        out("syn_absurd", tcp(c, p, flags="S", seq=rnd.getrandbits(32), options=opts,
                              window=rnd.choice([0, 1, 65535])))
        bogus = bytes([2, 0, 8, 1, 255, 3, 3, 200, 0])
        bogus += bytes(rnd.getrandbits(8) for _ in range(27))
        out("syn_bogus_raw", IP(src=c, dst=O) / Raw(raw(TCP(sport=p + 5000, dport=port, flags="S",
                                                           dataofs=14, seq=i))[:20] + bogus))
        out("syn_ipopts", IP(src=d, dst=O, options=[IPOption_NOP(), IPOption_Router_Alert()])
            / TCP(sport=p, dport=port, flags="S", seq=i))
    for sport in spec.get("live_ports", []):
        # the client's current seq on this tuple, so that the "blind" seqs are guaranteed to be
        # far from it: a truly random seq lands in tcpcopy's RST window (64 KiB) once in 65,536
        # and then ends the copy exactly like the client's own RST would (not what is tested)
        seen = sniff(filter=f"tcp and src host {e} and src port {sport} and dst port {port}",
                     count=1, timeout=10)
        assert seen, f"no packet of the live tuple {e}:{sport} within 10 s"
        live = seen[0][TCP].seq
        def blind():
            return (live + (1 << 31) + rnd.randrange(-(1 << 30), 1 << 30)) & 0xFFFFFFFF
        for _ in range(spec.get("per_live", 0)):
            out("live_rst", tcp(e, sport, flags="R", seq=blind()))
            out("live_fin", tcp(e, sport, flags="FA", seq=blind(), ack=rnd.getrandbits(32)))
else:
    s = conf.L2socket(iface=spec["iface"])
    good = bytearray(raw(IP(src="10.78.0.80", dst=O, id=1, flags="DF")
                         / TCP(sport=33333, dport=port, flags="PA") / Raw(b"y" * 20)))
    def out(kind, body):
        s.send(Ether(dst=spec["mac"], src="02:00:00:00:00:99", type=0x0800) / Raw(bytes(body)))
        sent[kind] = sent.get(kind, 0) + 1
        reaches(kind, bytes(body))
    for i in range(n):
        v6 = bytearray(good); v6[0] = 0x65; out("m_version6", v6)
        ihl2 = bytearray(good); ihl2[0] = 0x42; ihl2[10:12] = port.to_bytes(2, "big")
        out("m_ihl2", ihl2)                      # BPF reads the port from the IP checksum
        ihl3 = bytearray(good); ihl3[0] = 0x43; out("m_ihl3", ihl3)  # ... from saddr[2:4]
        long = bytearray(good); long[2:4] = (1500).to_bytes(2, "big"); out("m_totlen_long", long)
        short = bytearray(good); short[2:4] = (30).to_bytes(2, "big"); out("m_totlen_short", short)
        out("m_truncated", good[:36])
        out("k_empty", b"")
        out("k_one_byte", b"\x45")
print(json.dumps({"sent": sent, "passed": passed}))
"""


def run_injector(rig: Rig, ns_argv: List[str], spec: Dict[str, Any],
                 timeout: float = 60) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Run INJECT in a namespace: (what it sent per kind, what passed tcpcopy's kernel filter)."""
    argv = [*ns_argv, sys.executable, "-c", INJECT, json.dumps(spec)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(REPO),
                         env=rig.env, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    return doc["sent"], doc["passed"]


def _add(total: Dict[str, int], more: Dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


@dataclass
class F2Scale:
    """How much F2 sends. Frames: 4 per ``per_live`` (2 live tuples x RST + FIN), 13 per L3
    round, 8 per L2 round. Traffic: a keep-alive client (2 connections, its tuples stormed) and
    a second generator (``mode``; ``new`` = one session per request)."""

    per_live: int = 40
    l3_rounds: int = 60
    l2_rounds: int = 40
    ka_requests: int = 2400
    ka_rate: float = 120
    mode: str = "mixed"
    connections: int = 3
    requests: int = 1500
    rate: float = 125
    post_sizes: str = "0,2048"
    inject_timeout: float = 60
    tcpcopy_args: Tuple[str, ...] = ()     # more tcpcopy flags

    @property
    def frames(self) -> int:
        return 4 * self.per_live + 13 * self.l3_rounds + 8 * self.l2_rounds


#: The issue's full scale: 100,000 frames during a copy of 1,002 sessions (1,000 new + 2 kept
#: alive), the traffic lasting ~150 s (the injection takes ~1-2 min on an idle 2-core box).
F2_FULL = F2Scale(per_live=500, l3_rounds=6000, l2_rounds=2500, ka_requests=3000, ka_rate=20,
                  mode="new", connections=4, requests=1000, rate=6.5, post_sizes="",
                  inject_timeout=900)


def row_f2(rig: Rig, scale: F2Scale = F2Scale()) -> Dict[str, Any]:
    """Hostile frames on the online link during a live copy; the figures of tcpcopy's counters
    (``delta``: this run's), what was sent and what passed the kernel filter, the fidelity."""
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(list(scale.tcpcopy_args))
    proc = rig.procs[-1]
    mon = Sampler(pid_of(rig), rig.dir / "tcpcopy.json")
    n = rig.lab.index
    online_mac = rig.ns("online", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    base = counters(rig)
    ka_src = f"10.78.{n}.15"            # the keep-alive client, whose live tuples get stormed
    t0 = time.monotonic()
    second = ["--post-sizes", scale.post_sizes] if scale.post_sizes else ["--get-paths", "/?g1"]
    gens = [generator(rig, "gen0", "keepalive", 2, scale.ka_requests, scale.ka_rate,
                      ["--post-sizes", "0,2048", "--source", ka_src]),
            generator(rig, "gen1", scale.mode, scale.connections, scale.requests, scale.rate,
                      second)]
    ports = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(live_ports(rig, ka_src)),
                     10, "2 live keep-alive connections")
    sources = [f"10.78.{n}.{i}" for i in (11, 12, 13, 14)] + [ka_src]
    passed: Dict[str, int] = {}
    # first the storm on the live tuples (blind RST/FIN, random seqs), then everything else
    client = rig.lab.ns_argv("client")
    storm, p = run_injector(rig, client, {"mode": "l3", "online": rig.online, "port": 80, "n": 0,
                                          "sources": sources, "live_ports": ports,
                                          "per_live": scale.per_live}, scale.inject_timeout)
    _add(passed, p)
    stormed_live = live_ports(rig, ka_src) == ports
    l3, p = run_injector(rig, client, {"mode": "l3", "online": rig.online, "port": 80,
                                       "n": scale.l3_rounds, "sources": sources},
                         scale.inject_timeout)
    _add(passed, p)
    l2, p = run_injector(rig, ["ip", "netns", "exec", rig.lab.router_ns],
                         {"mode": "l2", "online": rig.online, "port": 80, "n": scale.l2_rounds,
                          "mac": online_mac, "iface": "p-online"}, scale.inject_timeout)
    _add(passed, p)
    injected_in = time.monotonic() - t0
    for i, gen in enumerate(gens):
        finish(rig, gen, f"gen{i}", 600)
    traffic_in = time.monotonic() - t0
    truth = rig.online_truth()
    want = scale.ka_requests + scale.requests
    copies = settle(rig, want, timeout=60)
    c = quiet_counters(rig, "tcpcopy", "captured")
    peak = mon.stop()
    sent = {**{f"storm_{k}": v for k, v in storm.items()}, **l3, **l2}
    g1_truth = only_uri(truth, "/?g1")
    return {
        "alive": alive(rig, proc), "live_ports": ports, "stormed_still_live": stormed_live,
        "storm": storm, "l3": l3, "l2": l2, "passed": passed,
        "frames_sent": sum(sent.values()),
        "want_malformed": sum(v for k, v in passed.items() if k.startswith("m_")),
        "delta": {k: c.get(k, 0) - base.get(k, 0) for k in c},
        "requests": sum(truth.values()), "requests_planned": want,
        "copies": sum(copies.values()), "fidelity": fidelity(truth, copies),
        "new_sessions": sum(g1_truth.values()),
        "new_session_fidelity": fidelity(g1_truth, copies) if g1_truth else None,
        "injected_in_s": round(injected_in, 1), "traffic_in_s": round(traffic_in, 1),
        "rss_base_kb": mon.series[0][1] if mon.series else 0, "rss_peak_kb": peak,
        "max_stats_gap_s": round(mon.max_gap, 2),
    }


def only_uri(truth: Any, prefix: str) -> Any:
    """The requests of ``truth`` whose URI starts with ``prefix`` (same Counter type)."""
    return type(truth)({k: v for k, v in truth.items() if k[1].startswith(prefix)})
