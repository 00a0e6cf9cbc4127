"""engine.rawsock in two ad-hoc namespaces (h2-*): filtered capture, statistics, no re-capture,
with the TPACKET_V3 ring and with recv() (ring 0); a burst read whole through the ring after the
socket joined a fanout group."""

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
caps = open_captures(None, prog, ring_bytes=int(sys.argv[4]) << 20)
print(json.dumps({"ready": [c.ifname for c in caps], "rings": [c.ring_bytes for c in caps]}),
      flush=True)
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
@pytest.mark.parametrize("ring_mb", [64, 0])
def test_filtered_capture_stats_and_no_recapture(ns_pair: NsPair, ring_mb: int) -> None:
    cap = subprocess.Popen([*ns_pair.argv(ns_pair.b), PY, "-c", CAPTURE, ns_pair.b_ip,
                            ns_pair.a_ip, "3", str(ring_mb)], cwd=REPO, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None and cap.stdin is not None
        ready = json.loads(cap.stdout.readline() or "{}")
        assert ready.get("ready") == ["eth0"], cap.stderr.read() if cap.stderr else ""
        assert ready["rings"] == [ring_mb << 20]
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


BURST = 3000
SEND_BURST = r"""
import sys
from engine import packets as P
from engine.rawsock import RawIPSender
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = RawIPSender()
errs = 0
for i in range(n):
    pkt = P.Packet(P.IPv4Header(P.ip_aton(src), P.ip_aton(dst), ident=i & 0xFFFF),
                   P.TCPHeader(20000 + i % 40000, 80, i, 1, flags=P.ACK | P.PSH),
                   i.to_bytes(4, "big") * 50)
    errs += s.send(pkt.with_checksums().to_bytes(), P.ip_aton(dst)) != 0
print(errs)
"""

CAPTURE_BURST = r"""
import json, select, sys, time
from engine import bpf, packets as P
from engine.rawsock import CaptureSocket
n = int(sys.argv[1])
cap = CaptureSocket("eth0", bpf.tcp_port_filter([80], direction="dst"))   # the default ring
# what another helper's --workers does after construction: PACKET_FANOUT, hash mode (0)
cap.sock.setsockopt(263, 18, 0x5A5A | (0 << 16))
print(json.dumps({"ready": cap.ring_bytes}), flush=True)
ep = select.epoll()
ep.register(cap.fileno(), select.EPOLLIN)
seqs, wakes = [], 0
deadline = time.monotonic() + 20
while len(seqs) < n and time.monotonic() < deadline:
    if not ep.poll(0.5):
        continue
    wakes += 1
    for f in cap.recv_frames(256):
        p = P.parse_ipv4_tcp(f, P.strip_ethernet(f)[1])
        seqs.append(p.tcp.seq)
        assert p.payload == p.tcp.seq.to_bytes(4, "big") * 50
r = cap.ring
print(json.dumps({"seqs": seqs, "stats": cap.stats(), "wakes": wakes, "blocks": r.blocks,
                  "block_nr": r.block_nr, "truncated": cap.truncated, "bad": r.bad_blocks,
                  "freezes": cap.freezes}), flush=True)
cap.close()
"""


@pytest.mark.integration
def test_burst_arrives_whole_through_the_ring_after_a_fanout_join(ns_pair: NsPair) -> None:
    """3000 frames (~1 MB of ring) through the default ring (256 MiB, 2048 blocks): every one
    arrives once, in order, in fewer wake-ups than frames, and ``stats()`` counts them all."""
    cap = subprocess.Popen([*ns_pair.argv(ns_pair.b), PY, "-c", CAPTURE_BURST, str(BURST)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None
        ready = json.loads(cap.stdout.readline() or "{}")
        assert ready.get("ready") == 256 << 20, cap.stderr.read() if cap.stderr else ""
        sent = subprocess.run([*ns_pair.argv(ns_pair.a), PY, "-c", SEND_BURST, ns_pair.a_ip,
                               ns_pair.b_ip, str(BURST)], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert sent.stdout.strip() == "0", sent.stderr
        out, err = cap.communicate(timeout=60)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    result = json.loads(out.strip().splitlines()[-1])
    missing = sorted(set(range(BURST)) - set(result["seqs"]))
    assert result["seqs"] == list(range(BURST)), (missing, result["stats"], err)
    assert result["stats"] == [BURST, 0]
    assert result["truncated"] == 0 and result["bad"] == 0 and result["freezes"] == 0
    assert result["block_nr"] == 2048 and result["blocks"] >= 1
    assert result["wakes"] < BURST


CAPTURE_REFUSED = r"""
import json, select, sys
from engine import bpf, packets as P, rawsock
from engine.rawsock import capture
capture.RING_FRAME = 24             # not a multiple of 16: the kernel refuses the ring (EINVAL)
cap = rawsock.CaptureSocket("eth0", bpf.tcp_port_filter([80], direction="dst"))
print(json.dumps({"ring": cap.ring_bytes, "banner": rawsock.capture_banner([cap])}), flush=True)
ep = select.epoll()
ep.register(cap.fileno(), select.EPOLLIN)
seen = []
while len(seen) < int(sys.argv[1]) and ep.poll(10):
    for f in cap.recv_frames():
        seen.append(P.parse_ipv4_tcp(f, P.strip_ethernet(f)[1]).tcp.sport)
print(json.dumps({"seen": seen, "stats": cap.stats()}), flush=True)
cap.close()
"""


@pytest.mark.integration
def test_refused_ring_falls_back_to_recv_with_one_log_line(ns_pair: NsPair) -> None:
    cap = subprocess.Popen([*ns_pair.argv(ns_pair.b), PY, "-c", CAPTURE_REFUSED, "2"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cap.stdout is not None
        ready = json.loads(cap.stdout.readline() or "{}")
        assert ready.get("ring") == 0, cap.stderr.read() if cap.stderr else ""
        assert len(ready["banner"]) == 1, ready
        assert ready["banner"][0].startswith("no TPACKET_V3 capture ring of 256 MiB on eth0: ")
        assert ready["banner"][0].endswith("; capturing with recv()")
        sent = subprocess.run([*ns_pair.argv(ns_pair.a), PY, "-c", SEND, ns_pair.a_ip,
                               ns_pair.b_ip, "40000:80,40001:22,40002:80"], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
        assert sent.stdout.strip() == "0", sent.stderr
        out, err = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert sorted(result["seen"]) == [40000, 40002], err
    assert result["stats"] == [2, 0]
