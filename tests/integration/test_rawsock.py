"""engine.rawsock in two ad-hoc namespaces (h2-*): filtered capture, statistics, no re-capture."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import List, NamedTuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable


class NsPair(NamedTuple):
    a: str          # namespace, eth0 = 10.213.0.1/24
    b: str          # namespace, eth0 = 10.213.0.2/24
    a_ip: str
    b_ip: str

    def argv(self, ns: str) -> List[str]:
        return ["ip", "netns", "exec", ns]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


@pytest.fixture
def ns_pair() -> Iterator[NsPair]:
    """Two namespaces joined by a veth (offloads off), always deleted at teardown."""
    tag = secrets.token_hex(3)
    a, b = f"h2-{tag}-a", f"h2-{tag}-b"
    try:
        _run("ip", "netns", "add", a)
        _run("ip", "netns", "add", b)
        _run("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", b)
        for ns, addr in ((a, "10.213.0.1/24"), (b, "10.213.0.2/24")):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off",
                            "tso", "off", "gso", "off"], capture_output=True, timeout=20)
        yield NsPair(a, b, "10.213.0.1", "10.213.0.2")
    finally:
        for ns in (a, b):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  timeout=20).stdout.split()
            for pid in pids:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        assert not {a, b} & set(subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


SEND = r"""
import sys
from engine import packets as P
from engine.rawsock import RawIPSender
src, dst, spec = sys.argv[1], sys.argv[2], sys.argv[3]
s = RawIPSender()
errs = 0
for i, item in enumerate(spec.split(",")):
    sport, dport = (int(x) for x in item.split(":"))
    pkt = P.Packet(P.IPv4Header(P.ip_aton(src), P.ip_aton(dst), ident=i),
                   P.TCPHeader(sport, dport, 1000 + i, 1, flags=P.ACK | P.PSH), b"x" * 10)
    errs += s.send(pkt.with_checksums().to_bytes(), P.ip_aton(dst)) != 0
print(errs)
"""

CAPTURE = r"""
import json, sys, time
from engine import bpf, packets as P
from engine.rawsock import CaptureSocket, RawIPSender, open_captures, list_interfaces
prog = bpf.tcp_port_filter([80], direction="dst")
caps = open_captures(None, prog)
print(json.dumps({"ready": [c.ifname for c in caps]}), flush=True)
sys.stdin.readline()                      # the peer has sent
own = RawIPSender()                       # our own output: dport 80 too, must not be seen
pkt = P.Packet(P.IPv4Header(P.ip_aton(sys.argv[1]), P.ip_aton(sys.argv[2])),
               P.TCPHeader(5555, 80, 1, 1, flags=P.ACK | P.PSH), b"own")
own_errs = sum(own.send(pkt.with_checksums().to_bytes(), P.ip_aton(sys.argv[2])) != 0
               for _ in range(5))
seen = []
deadline = time.monotonic() + 3
while time.monotonic() < deadline and len(seen) < int(sys.argv[3]):
    for c in caps:
        for f in c.recv_frames():
            p = P.parse_ipv4_tcp(f, P.strip_ethernet(f)[1])
            seen.append([P.ip_ntoa(p.ip.src), p.tcp.sport, p.tcp.dport, p.payload.decode()])
    time.sleep(0.01)
time.sleep(0.2)                            # anything extra (a leak) would arrive now
for c in caps:
    for f in c.recv_frames():
        p = P.parse_ipv4_tcp(f, P.strip_ethernet(f)[1])
        seen.append([P.ip_ntoa(p.ip.src), p.tcp.sport, p.tcp.dport, p.payload.decode()])
print(json.dumps({"seen": seen, "stats": [c.stats() for c in caps], "own_errs": own_errs,
                  "ifaces": list_interfaces()}), flush=True)
"""


@pytest.mark.integration
def test_filtered_capture_stats_and_no_recapture(ns_pair: NsPair) -> None:
    cap = subprocess.Popen([*ns_pair.argv(ns_pair.b), PY, "-c", CAPTURE, ns_pair.b_ip,
                            ns_pair.a_ip, "3"], cwd=REPO, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None and cap.stdin is not None
        ready = json.loads(cap.stdout.readline() or "{}")
        assert ready.get("ready") == ["eth0"], cap.stderr.read() if cap.stderr else ""
        sent = subprocess.run([*ns_pair.argv(ns_pair.a), PY, "-c", SEND, ns_pair.a_ip,
                               ns_pair.b_ip, "40000:80,40001:81,40002:80,40003:22,40004:80"],
                              cwd=REPO, capture_output=True, text=True, timeout=30)
        assert sent.stdout.strip() == "0", sent.stderr
        cap.stdin.write("go\n")
        cap.stdin.flush()
        out, err = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["own_errs"] == 0
    assert sorted(result["seen"]) == [[ns_pair.a_ip, p, 80, "xxxxxxxxxx"]
                                      for p in (40000, 40002, 40004)], err
    packets, drops = result["stats"][0]
    assert packets == 3 and drops == 0
    assert result["ifaces"] == ["eth0"]
