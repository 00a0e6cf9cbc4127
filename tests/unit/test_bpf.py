"""engine.bpf: generated classic-BPF programs, checked with the pure interpreter on real frames."""

from __future__ import annotations

import os
import shutil

import pytest

from engine import bpf
from engine import packets as P
from tests.unit.vectors import vector_frames as frames

TARGET = P.ip_aton("10.110.0.20")
ONLINE = P.ip_aton("10.110.0.10")


def truth(frame: bytes, ports: set[int], hosts: set[int], src: bool) -> bool:
    pkt = P.parse_ipv4_tcp(frame, P.strip_ethernet(frame)[1])
    port = pkt.tcp.sport if src else pkt.tcp.dport
    host = pkt.ip.src if src else pkt.ip.dst
    return port in ports and (not hosts or host in hosts)


def vlan(frame: bytes) -> bytes:
    return frame[:12] + b"\x81\x00\x00\x07" + frame[12:]


CASES = [
    ({80}, set(), "dst"), ({80}, {TARGET}, "dst"), ({80}, {ONLINE}, "dst"),
    ({80}, set(), "src"), ({80}, {TARGET}, "src"), ({36524, 80}, {ONLINE, TARGET}, "src"),
    ({81, 8080}, set(), "dst"),
]


@pytest.mark.parametrize(("ports", "hosts", "direction"), CASES)
def test_generated_filter_matches_truth_on_vectors(ports: set[int], hosts: set[int],
                                                   direction: str) -> None:
    prog = bpf.tcp_port_filter(ports, hosts, direction)
    accepted = 0
    for name in ("c-target-copied-traffic", "c-intercept-channel", "c-online-client-traffic"):
        for frame in frames(name):
            want = truth(frame, ports, hosts, direction == "src")
            assert (bpf.run_filter(prog, frame) > 0) == want
            assert (bpf.run_filter(prog, vlan(frame)) > 0) == want
            accepted += want
    if ports != {81, 8080}:
        assert accepted > 0


def test_filter_rejects_non_tcp_fragments_and_ip_options_handled() -> None:
    prog = bpf.tcp_port_filter([80])
    base = P.parse_ipv4_tcp(frames("c-online-client-traffic")[0], 14)
    eth = frames("c-online-client-traffic")[0][:14]
    ok = eth + base.with_checksums().to_bytes()
    assert bpf.run_filter(prog, ok) == bpf.ACCEPT
    udp = bytearray(ok)
    udp[14 + 9] = 17
    assert bpf.run_filter(prog, bytes(udp)) == 0
    frag = base.copy()
    frag.ip.flags_frag = 0x0005
    assert bpf.run_filter(prog, eth + frag.to_bytes()) == 0
    opts = base.copy()
    opts.ip.options = b"\x01\x01\x01\x00"     # IHL 6: the port moves 4 bytes
    assert bpf.run_filter(prog, eth + opts.with_checksums().to_bytes()) == bpf.ACCEPT
    assert bpf.run_filter(prog, b"\x00" * 20) == 0              # short frame: OOB load rejects
    arp = eth[:12] + b"\x08\x06" + bytes(28)
    assert bpf.run_filter(prog, arp) == 0


def test_bad_arguments_raise_bpf_error() -> None:
    with pytest.raises(bpf.BpfError):
        bpf.tcp_port_filter([])
    with pytest.raises(bpf.BpfError):
        bpf.tcp_port_filter([70000])
    with pytest.raises(bpf.BpfError):
        bpf.tcp_port_filter([80], direction="both")
    with pytest.raises(bpf.BpfError, match="too large"):
        bpf.tcp_port_filter(range(1, 400))


def test_parse_ddd() -> None:
    assert bpf.parse_ddd("2\n40 0 0 12\n6 0 0 262144\n") == [(40, 0, 0, 12), (6, 0, 0, 262144)]
    with pytest.raises(bpf.BpfError):
        bpf.parse_ddd("3\n40 0 0 12\n")
    with pytest.raises(bpf.BpfError):
        bpf.parse_ddd("garbage")


@pytest.mark.skipif(shutil.which("tcpdump") is None and not os.path.exists("/usr/sbin/tcpdump"),
                    reason="tcpdump not installed")
def test_compile_expression_agrees_with_generated_filter() -> None:
    theirs = bpf.compile_expression("tcp and src port 80 and src host 10.110.0.20")
    ours = bpf.tcp_port_filter([80], [TARGET], "src")
    for frame in frames("c-target-copied-traffic") + frames("c-intercept-channel"):
        assert (bpf.run_filter(theirs, frame) > 0) == (bpf.run_filter(ours, frame) > 0)
    with pytest.raises(bpf.BpfError, match="syntax error"):
        bpf.compile_expression("tcp and")


def test_compile_expression_without_tcpdump_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpf.shutil, "which", lambda _name: None)
    monkeypatch.setattr(bpf.os.path, "exists", lambda _p: False)
    with pytest.raises(bpf.BpfError, match="needs tcpdump"):
        bpf.compile_expression("tcp")


def test_interpreter_alu_and_memory() -> None:
    prog = [
        (bpf.LD | bpf.IMM, 0, 0, 6), (bpf.ST, 0, 0, 3), (bpf.LDX | bpf.IMM, 0, 0, 7),
        (bpf.ALU | 0x20 | bpf.X, 0, 0, 0),                      # A *= X -> 42
        (bpf.MISC | bpf.TAX, 0, 0, 0), (bpf.LD | bpf.MEM, 0, 0, 3),
        (bpf.ALU | 0x00 | bpf.X, 0, 0, 0),                      # A += X -> 48
        (bpf.JMP | bpf.JGT | bpf.K, 1, 0, 47), (bpf.RET, 0, 0, 0),
        (bpf.RET | bpf.RET_A, 0, 0, 0),
    ]
    assert bpf.run_filter(prog, b"") == 48
    assert bpf.run_filter([(bpf.LD | bpf.IMM, 0, 0, 1), (bpf.ALU | 0x30, 0, 0, 0)], b"") == 0


def test_simple_expressions_need_no_tcpdump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpf, "compile_expression", lambda e: pytest.fail(f"tcpdump for {e}"))
    assert bpf.filter_for_expression("tcp and src port 80") == bpf.tcp_port_filter([80], (), "src")
    assert bpf.filter_for_expression("ip and tcp and dst port 8080 and dst host 10.110.0.20") == \
        bpf.tcp_port_filter([8080], [TARGET], "dst")
    for other in ("tcp and src port 80 and dst host 1.2.3.4", "src port 80", "tcp and port 80",
                  "tcp and src port 80 and src port 81", "tcp and src host 1.2.3"):
        assert bpf.simple_expression(other) is None


@pytest.mark.parametrize(("ports", "hosts", "direction"), CASES)
def test_skip_pure_acks_matches_truth_on_vectors(ports: set[int], hosts: set[int],
                                                 direction: str) -> None:
    """With skip_pure_acks, exactly the matching segments that carry payload or SYN/FIN/RST."""
    prog = bpf.tcp_port_filter(ports, hosts, direction, skip_pure_acks=True)
    seen = {"pure": 0, "kept": 0}
    for name in ("c-target-copied-traffic", "c-intercept-channel", "c-online-client-traffic"):
        for frame in frames(name):
            pkt = P.parse_ipv4_tcp(frame, P.strip_ethernet(frame)[1])
            pure = not pkt.payload and not pkt.tcp.flags & 0x07
            want = truth(frame, ports, hosts, direction == "src") and not pure
            assert (bpf.run_filter(prog, frame) > 0) == want, (name, pkt.tcp.flags)
            assert (bpf.run_filter(prog, vlan(frame)) > 0) == want
            if truth(frame, ports, hosts, direction == "src"):
                seen["pure" if pure else "kept"] += 1
    if ports != {81, 8080}:
        assert seen["pure"] > 0 and seen["kept"] > 0, seen


def test_skip_pure_acks_with_ip_options_and_timestamps() -> None:
    prog = bpf.tcp_port_filter([80], skip_pure_acks=True)
    frame = frames("c-online-client-traffic")[0]
    base = P.parse_ipv4_tcp(frame, 14)
    eth = frame[:14]
    for ip_opts in (b"", b"\x01\x01\x01\x00"):
        for tcp_opts in (b"", b"\x01\x01\x08\x0a" + bytes(8)):
            for flags, payload, want in ((0x10, b"", 0), (0x18, b"x", bpf.ACCEPT),
                                         (0x11, b"", bpf.ACCEPT), (0x04, b"", bpf.ACCEPT),
                                         (0x02, b"", bpf.ACCEPT), (0x10, b"GET /", bpf.ACCEPT)):
                pkt = base.copy()
                pkt.ip.options = ip_opts
                pkt.tcp.options = tcp_opts
                pkt.tcp.flags = flags
                pkt.payload = payload
                got = bpf.run_filter(prog, eth + pkt.with_checksums().to_bytes())
                assert got == want, (ip_opts, tcp_opts, flags, payload)
    # the Ethernet trailer of a short frame (padding to 60 bytes) is not payload
    pkt = base.copy()
    pkt.tcp.options, pkt.tcp.flags, pkt.payload = b"", 0x10, b""
    padded = eth + pkt.with_checksums().to_bytes() + bytes(6)
    assert bpf.run_filter(prog, padded) == 0
