"""F2: hostile packets and hostile channel peers while real traffic is copied (root, own lab).

Packets: crafted with scapy and injected while the traffic generator runs. TCP-level damage
(bad data offset, truncated TCP header, bogus options, absurd SYN options, fragments, IPv4
options, RST/FIN storms with random sequence numbers, also on the live client tuples) is sent
from the client namespace through the lab router. IP-header damage (bad version/IHL/lengths)
cannot cross a router (its IP stack drops it), so those frames are written straight onto the
bridge port facing online, inside the lab's own router namespace. The injector runs tcpcopy's
own kernel filter (engine.bpf, pure ACKs dropped) on every packet it sends: each malformed one
that passes it must be counted as ``malformed`` by the engine (the ones that look like a pure
ACK, e.g. a data offset beyond the packet, never reach user space).

Channel: garbage, wrong and silent peers, an authenticated peer sending junk messages, and an
authenticated peer registering far more routes than ``--max-routes``: intercept stays up,
counts ``clients_rejected_auth``/``channel_malformed``/``route_evictions``, and tcpcopy (the
other client) keeps copying.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, Dict, List

import pytest

from tests.integration.copyrig import REPO, Rig, fidelity, settle, wait_for

pytestmark = pytest.mark.integration

# Injector run inside a lab namespace: argv[1] = JSON spec; prints {"sent": {kind: n}}.
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


def inject(rig: Rig, role: str, spec: Dict[str, Any], timeout: float = 60) -> Dict[str, int]:
    return _run_injector(rig, rig.lab.ns_argv(role), spec, timeout)


def _run_injector(rig: Rig, ns_argv: List[str], spec: Dict[str, Any],
                  timeout: float = 60) -> Dict[str, int]:
    """Run INJECT in a namespace; returns what it sent per kind, adds what passed to PASSED."""
    argv = [*ns_argv, sys.executable, "-c", INJECT, json.dumps(spec)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(REPO),
                         env=rig.env, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    sent: Dict[str, int] = doc["sent"]
    PASSED.update({k: PASSED.get(k, 0) + v for k, v in doc["passed"].items()})
    return sent


#: Per kind, how many injected packets pass tcpcopy's kernel filter (filled by the injectors).
PASSED: Dict[str, int] = {}


def live_ports(rig: Rig, src: str = "") -> List[int]:
    filt = ["dst", f"{rig.online}:80", *(["src", src] if src else [])]
    out = rig.ns("client", ["ss", "-tnH", "state", "established", *filt])
    return sorted({int(line.split()[-2].rsplit(":", 1)[1]) for line in out.stdout.splitlines()
                   if line.strip()})


def counters(rig: Rig, name: str = "tcpcopy") -> Dict[str, int]:
    c: Dict[str, int] = rig.stats(name).get("counters", {})
    return c


def quiet_counters(rig: Rig, name: str, key: str, quiet: float = 1.0) -> Dict[str, int]:
    """The counters once ``key`` has not moved for ``quiet`` s (stats are written every 0.2 s)."""
    last, since = -1, time.monotonic()
    deadline = since + 15
    while True:
        c = counters(rig, name)
        if c.get(key, -1) != last:
            last, since = c.get(key, -1), time.monotonic()
        elif time.monotonic() - since >= quiet or time.monotonic() > deadline:
            return c
        time.sleep(0.2)


def test_hostile_packets_during_live_copy(rig: Rig) -> None:
    PASSED.clear()
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy()
    tcpcopy = rig.procs[-1]
    n = rig.lab.index
    online_mac = rig.ns("online", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    base = counters(rig)
    ka_src = f"10.78.{n}.15"            # the keep-alive client, whose live tuples get stormed
    gens = [rig.spawn("client", [sys.executable, "-m", "labctl.lab.traffic", "--url",
                                 f"http://{rig.online}", "--requests", reqs, "--rate", rate,
                                 "--mode", mode, "--connections", conns, "--post-sizes",
                                 "0,2048", "--seq-query", "--json", "--timeout", "20", *src],
                      f"gen{i}")
            for i, (mode, conns, reqs, rate, src) in enumerate([
                ("keepalive", "2", "2400", "120", ["--source", ka_src]),   # ~20 s: outlives
                ("mixed", "3", "1500", "125", [])])]                       # scapy's start-up
    ports = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(live_ports(rig, ka_src)),
                     10, "2 live keep-alive connections")
    sources = [f"10.78.{n}.{i}" for i in (11, 12, 13, 14)] + [ka_src]
    # first the storm on the live tuples (blind RST/FIN, random seqs), then everything else
    storm = inject(rig, "client", {"mode": "l3", "online": rig.online, "port": 80, "n": 0,
                                   "sources": sources, "live_ports": ports, "per_live": 40})
    assert live_ports(rig, ka_src) == ports            # the stormed connections still live
    l3 = inject(rig, "client", {"mode": "l3", "online": rig.online, "port": 80, "n": 60,
                                "sources": sources})
    l2 = _inject_l2(rig, online_mac)
    for i, gen in enumerate(gens):
        assert gen.wait(60) == 0, (rig.dir / f"gen{i}.out").read_text()[-2000:]
    truth = rig.online_truth()
    assert sum(truth.values()) == 3900
    copies = settle(rig, 3900, timeout=30)
    c = quiet_counters(rig, "tcpcopy", "captured")
    assert tcpcopy.poll() is None and rig.stats("tcpcopy").get("state") == "running"
    delta = {k: c.get(k, 0) - base.get(k, 0) for k in c}
    # every malformed packet the kernel filter lets through is counted, each kind reaches it
    want_malformed = sum(v for k, v in PASSED.items() if k.startswith("m_"))
    assert {k for k, v in PASSED.items() if k.startswith("m_") and v} >= {
        "m_doff2", "m_version6", "m_totlen_long", "m_truncated"}, PASSED
    ratio = fidelity(truth, copies)
    print(f"ports={ports} storm={storm} sent l3={l3} l2={l2} passed={PASSED} delta={delta} "
          f"fidelity={ratio:.4f}")
    assert ratio >= 0.99, (ratio, delta)
    assert delta["kernel_drops"] == 0, delta
    assert delta["malformed"] == want_malformed, (want_malformed, delta)
    assert delta["frag"] == l3["frag_first"], delta
    assert delta["clt_syn"] >= l3["syn_absurd"] + l3["syn_ipopts"], delta
    assert delta["clt_no_session"] >= l3["rst_random"], delta
    # every blind RST reached a live copy session and was ignored; none was torn down and rejoined
    assert delta["clt_rst_ignored"] >= storm["live_rst"], (storm, delta)
    assert delta["recon_for_no_syn"] == 0, delta


def _inject_l2(rig: Rig, mac: str) -> Dict[str, int]:
    """Frames with broken IP headers onto the bridge port facing online (router namespace)."""
    spec = {"mode": "l2", "online": rig.online, "port": 80, "n": 40, "mac": mac,
            "iface": "p-online"}
    return _run_injector(rig, ["ip", "netns", "exec", rig.lab.router_ns], spec)


# Hostile channel peer run inside a lab namespace: argv = host port key mode count.
HOSTILE = r"""
import json, os, socket, sys, time
from engine import packets as P, protocol as C
host, port, key, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count = int(sys.argv[5])
sock = socket.create_connection((host, port), timeout=5)
t0 = time.monotonic()
out = {"mode": mode}
def drain(limit):
    got = b""
    sock.settimeout(limit)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                out["closed_after"] = round(time.monotonic() - t0, 3)
                break
            got += data
    except ConnectionResetError:
        # closed with our bytes still unread (e.g. the rest of a junk run): the kernel
        # answers with a RST instead of a FIN -- closed all the same
        out["closed_after"] = round(time.monotonic() - t0, 3)
        out["reset"] = True
    except socket.timeout:
        pass
    return got
if mode in ("garbage", "silent", "huge"):
    if mode == "garbage":
        sock.sendall(os.urandom(4096))
    elif mode == "huge":
        try:
            sock.sendall(b"\xff" * (4 << 20))      # 4 MiB of junk claiming nothing sane
        except OSError:
            pass
    out["received"] = len(drain(5))
else:
    chan = C.ClientChannel(open(key).read().strip().encode(), time.monotonic())
    sock.settimeout(5)
    while not chan.authenticated:
        chan.feed(sock.recv(4096), time.monotonic())
        sock.sendall(chan.take_output())
    sock.sendall(chan.take_output())
    if mode == "junk":                               # authenticated, then random messages
        sock.sendall(os.urandom(14 * count))
    else:                                            # route flood, a few junk types in between
        target = P.ip_aton(sys.argv[6])
        for i in range(count):
            chan.register(P.ip_aton("10.200.%d.%d" % (i >> 8 & 255, i & 255)), 1024 + (i % 60000),
                          target, 80)
            if i % 500 == 0:
                sock.sendall(C.encode_message(77, 1, 2, 3, 4))
            sock.sendall(chan.take_output())
        out["registered"] = count
    out["received"] = len(drain(3.0))
print(json.dumps(out))
"""


def hostile(rig: Rig, role: str, mode: str, count: int = 0) -> Dict[str, Any]:
    argv = [*rig.lab.ns_argv(role), sys.executable, "-c", HOSTILE, rig.assistant, "36524",
            str(rig.key), mode, str(count), rig.target]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(REPO),
                         env=rig.env, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    out: Dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_hostile_channel_peers_and_route_flood_during_live_copy(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.engine("assistant", "intercept", ["-i", "eth0", "-F", "tcp and src port 80",
                                          "--max-routes", "300"], "intercept")
    wait_for(lambda: rig.stats("intercept").get("state") == "running", 20, "intercept running")
    intercept = rig.procs[-1]
    rig.start_tcpcopy()
    tcpcopy = rig.procs[-1]
    gen = rig.spawn("client", [sys.executable, "-m", "labctl.lab.traffic", "--url",
                               f"http://{rig.online}", "--requests", "2000", "--rate", "200",
                               "--mode", "keepalive", "--connections", "4", "--post-sizes",
                               "0,1024", "--seq-query", "--json", "--timeout", "20"], "gen")
    wait_for(lambda: len(live_ports(rig)) == 4, 10, "4 live client connections")
    results = [hostile(rig, "client", m) for m in ("garbage", "silent", "huge")]
    results.append(hostile(rig, "online", "junk", 200))
    flood = hostile(rig, "online", "flood", 5000)
    assert gen.wait(60) == 0, (rig.dir / "gen.out").read_text()[-2000:]
    truth = rig.online_truth()
    copies = settle(rig, 2000, timeout=30)
    ratio = fidelity(truth, copies)
    ic = quiet_counters(rig, "intercept", "resp_routed")
    tc = counters(rig)
    print(f"hostile={results} flood={flood} intercept={ic} fidelity={ratio:.4f}")
    assert intercept.poll() is None and tcpcopy.poll() is None
    assert rig.stats("intercept").get("state") == "running"
    for r in results[:3]:                       # unauthenticated: closed, only the challenge
        assert r.get("closed_after", 99) < 1.5 and r["received"] == 20, r
    assert results[3].get("closed_after") is not None, results[3]   # junk run -> closed
    assert ic["clients_rejected_auth"] >= 3, ic
    assert ic["channel_malformed"] >= 1 + 5000 // 500, ic
    assert ic["route_evictions"] >= 5000 - 300, ic
    assert rig.stats("intercept").get("routes", 0) <= 300
    assert any(i.get("connections", 0) > 0 for i in rig.stats("tcpcopy").get("intercepts", []))
    assert ratio >= 0.99, (ratio, ic, tc)


CONNECT_FLOOD = r"""
import json, selectors, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sel = selectors.DefaultSelector()
t0 = time.monotonic()
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    sel.register(s, selectors.EVENT_READ, (i, time.monotonic()))
connect_time = time.monotonic() - t0
closed, got, first = {}, {}, {}
deadline = time.monotonic() + 12
while time.monotonic() < deadline and len(closed) < n:
    for key, _ in sel.select(timeout=0.1):
        i, at = key.data
        try:
            data = key.fileobj.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        now = time.monotonic()
        if data:
            got[i] = got.get(i, 0) + len(data)
            first.setdefault(i, now)
        else:
            # how long a peer that got the challenge was left open after it
            closed[i] = now - first[i] if i in first else 0.0
            sel.unregister(key.fileobj)
            key.fileobj.close()
print(json.dumps({"connected": n, "closed": len(closed), "connect_s": connect_time,
                  "challenged": len(first),
                  "latest_close": max(closed.values(), default=None),
                  "max_bytes": max(got.values(), default=0)}))
"""


def test_a_connect_flood_on_the_channel_port_is_bounded_and_closed(rig: Rig) -> None:
    """1,000 concurrent connections that never authenticate, during a live copy: at most 128
    wait for the handshake at a time (the rest are refused at once), every challenged one is
    closed within 1.5 s of its challenge, all are closed, none gets more than the 20-byte
    challenge, and the copy goes on."""
    rig.route_pool_via_assistant()
    rig.start_intercept()
    intercept = rig.procs[-1]
    rig.start_tcpcopy()
    gen = rig.spawn("client", [sys.executable, "-m", "labctl.lab.traffic", "--url",
                               f"http://{rig.online}", "--requests", "600", "--rate", "150",
                               "--mode", "keepalive", "--connections", "2", "--seq-query",
                               "--json", "--timeout", "20"], "gen")
    res = subprocess.run([*rig.lab.ns_argv("online"), sys.executable, "-c", CONNECT_FLOOD,
                          rig.assistant, "36524", "1000"], capture_output=True, text=True,
                         timeout=60, check=True)
    flood = json.loads(res.stdout.strip().splitlines()[-1])
    assert gen.wait(60) == 0
    copies = settle(rig, 600, timeout=30)
    ic = rig.stats("intercept")["counters"]
    print(f"flood={flood} intercept={ic}")
    assert intercept.poll() is None
    assert flood["closed"] == flood["connected"] and flood["latest_close"] < 1.5, flood
    assert flood["max_bytes"] <= 20, flood
    assert ic["clients_refused_busy"] > 0 and ic["clients_rejected_auth"] > 0, ic
    assert fidelity(rig.online_truth(), copies) >= 0.999
