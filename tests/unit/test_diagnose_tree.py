"""The troubleshooting tree on small captures crafted with scapy (Linux cooked, like `-i any`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import CookedLinux
from scapy.utils import wrpcap

from labctl.verify import diagnose as dg
from labctl.verify import tree
from labctl.verify.ledger import Conntrack, DaemonStats

CLIENT, ONLINE, TARGET, ASSIST = "10.78.9.10", "10.77.9.10", "10.77.9.20", "10.77.9.30"
FAKE = "10.79.9.10"
IN, OUT = 0, 4


def frame(t: float, src: str, dst: str, sport: int, dport: int, flags: str, pkttype: int,
          bad_csum: bool = False, load: bytes = b"") -> Any:
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if "A" in flags else 0)
    pkt = CookedLinux(pkttype=pkttype) / IP(src=src, dst=dst) / tcp / load
    pkt = CookedLinux(bytes(pkt))
    if bad_csum:
        pkt[TCP].chksum = (pkt[TCP].chksum + 1) & 0xFFFF
        pkt = CookedLinux(bytes(pkt))
    pkt.time = t
    return pkt


def session(port: int, t: float = 0.0, route_ok: bool = True, forward: bool = False,
            rst: bool = False, bad_csum: bool = False, answer: bool = True,
            refuse: bool = False, repeat_synack: bool = False, frag_needed: bool = False,
            load: bytes = b"") -> dict[str, list[Any]]:
    """The frames each host sees for one copied session."""
    online = [frame(t, CLIENT, ONLINE, port, 80, "S", IN),
              frame(t + 0.001, FAKE, TARGET, port, 80, "S", OUT)]
    if load:
        online.append(frame(t + 0.0011, FAKE, TARGET, port, 80, "PA", OUT, load=load))
    target = [frame(t + 0.002, FAKE, TARGET, port, 80, "S", IN, bad_csum=bad_csum)]
    assistant: list[Any] = []
    if frag_needed:
        icmp = CookedLinux(pkttype=IN) / IP(src="10.77.9.1", dst=FAKE) / ICMP(type=3, code=4)
        icmp.time = t + 0.0015
        online.append(icmp)
    if refuse:
        target.append(frame(t + 0.003, TARGET, FAKE, 80, port, "RA", OUT))
        return {"online": online, "target": target, "assistant": assistant}
    if repeat_synack:
        target.append(frame(t + 0.0025, TARGET, FAKE, 80, port, "SA", OUT))
    if answer:
        target.append(frame(t + 0.003, TARGET, FAKE, 80, port, "SA", OUT))
        if route_ok:
            assistant.append(frame(t + 0.004, TARGET, FAKE, 80, port, "SA", IN))
            if forward:
                assistant.append(frame(t + 0.005, TARGET, FAKE, 80, port, "SA", OUT))
                icmp = CookedLinux(pkttype=OUT) / IP(src=ASSIST, dst=TARGET) / ICMP(type=5)
                icmp.time = t + 0.005
                assistant.append(icmp)
        if rst:
            target.append(frame(t + 0.05, FAKE, TARGET, port, 80, "R", IN))
    return {"online": online, "target": target, "assistant": assistant}


def captures(tmp_path: Path, **kw: object) -> tree.Captures:
    frames: dict[str, list[Any]] = {"online": [], "target": [], "assistant": []}
    for i in range(5):
        for role, fs in session(40000 + i, t=1.0 + i, **kw).items():  # type: ignore[arg-type]
            frames[role] += fs
    read: dict[str, list[tree.Pkt]] = {}
    for role, fs in frames.items():
        path = tmp_path / f"{role}.pcap"
        wrpcap(str(path), fs or [CookedLinux() / IP(src="127.0.0.1", dst="127.0.0.1") / ICMP()])
        read[role] = dg.read_pcap(str(path))
    return tree.Captures(read["online"], read["target"], read["assistant"])


def facts(**kw: object) -> tree.Facts:
    base: dict[str, object] = dict(
        pool=["10.79.9.0/24"], service_ports=[80], target_addresses=[TARGET],
        assistant_address=ASSIST,
        daemons=[DaemonStats("online", "tcpcopy", "running"),
                 DaemonStats("assistant", "intercept", "running")],
        intercept_routed_delta=10, ip_forward=0, rp_filter=0, rp_filter_drops=0,
        route_via=ASSIST, conntrack=[Conntrack("online", 10, 1000), Conntrack("target", 5, 1000)],
        target_listeners=[("0.0.0.0", 80), ("127.0.0.1", 22)], listen_overflows=0)
    base.update(kw)
    return tree.Facts(**base)  # type: ignore[arg-type]


def broken(d: tree.Diagnosis) -> Optional[str]:
    return d.broken.question if d.broken else None


def test_read_pcap_direction_flags_and_checksums(tmp_path: Path) -> None:
    c = captures(tmp_path, bad_csum=True)
    assert c.online is not None and c.target is not None
    assert [p.direction for p in c.online[:2]] == ["in", "out"]
    assert c.online[1].src == FAKE and c.online[1].syn
    assert c.target[0].csum_ok is False and c.target[1].csum_ok is True
    assert c.target[1].synack


def test_healthy_lab_has_no_broken_link(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path), facts())
    assert d.broken is None
    assert all(s.status == "ok" for s in d.steps), d.steps


def test_route_to_assistant_removed(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, route_ok=False), facts(route_via="10.77.9.254"))
    assert d.broken is not None and "reach the assistant" in d.broken.question
    assert "10.77.9.254" in d.broken.evidence
    assert "ip route replace 10.79.9.0/24 via 10.77.9.30" in d.broken.fix
    assert d.steps[-1].status == "skipped"


def test_intercept_stopped(tmp_path: Path) -> None:
    daemons = [DaemonStats("online", "tcpcopy", "running"),
               DaemonStats("assistant", "intercept", "down", detail="process gone")]
    d = tree.walk(captures(tmp_path), facts(daemons=daemons, intercept_routed_delta=0))
    assert d.broken is not None and d.broken.question.startswith("the engine daemons run")
    assert "intercept on assistant: down" in d.broken.evidence


def test_intercept_alive_but_routing_nothing(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path), facts(intercept_routed_delta=0))
    assert broken(d) == "intercept passes the answers back to tcpcopy"


def test_ip_forward_on_assistant(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, forward=True), facts(ip_forward=1))
    assert d.broken is not None and "ip_forward=0" in d.broken.question
    assert "5 answers forwarded" in d.broken.evidence and "5 ICMP redirects" in d.broken.evidence
    assert d.broken.fix == "on the assistant: sysctl -w net.ipv4.ip_forward=0"


def test_forwarding_seen_in_capture_even_if_sysctl_unknown(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, forward=True), facts(ip_forward=None))
    assert d.broken is not None and "black-holes" in d.broken.question


def test_rst_right_after_synack_is_a_leak(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, rst=True), facts())
    assert d.broken is not None and "RST" in d.broken.question
    assert d.broken.evidence.startswith("5 sessions reset")


@pytest.mark.parametrize(
    ("kw", "fact_kw", "want"),
    [
        ({"answer": False}, {"rp_filter": 1, "rp_filter_drops": 5}, "rp_filter"),
        ({"answer": False, "bad_csum": True}, {}, "checksum"),
        ({"answer": False}, {}, "listening"),
    ],
)
def test_target_does_not_answer(tmp_path: Path, kw: dict[str, bool],
                                fact_kw: dict[str, int], want: str) -> None:
    d = tree.walk(captures(tmp_path, **kw), facts(**fact_kw))
    assert d.broken is not None and d.broken.question.startswith("the target answers")
    assert want in d.broken.fix


def test_conntrack_full(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path), facts(conntrack=[Conntrack("online", 65536, 65536)]))
    assert d.broken is not None and "conntrack" in d.broken.question
    assert "notrack" in d.broken.fix


def test_no_client_traffic_and_no_copies(tmp_path: Path) -> None:
    empty = tree.Captures([], [], [])
    assert "client traffic" in (broken(tree.walk(empty, facts())) or "")
    c = captures(tmp_path)
    assert c.online is not None
    no_copies = tree.Captures([p for p in c.online if p.direction == "in"], c.target, c.assistant)
    assert broken(tree.walk(no_copies, facts())) == "tcpcopy sends copies from online"


def test_fact_parsers() -> None:
    netstat = ("TcpExt: SyncookiesSent IPReversePathFilter\nTcpExt: 0 7\n"
               "IpExt: InNoRoutes\nIpExt: 3\n")
    assert dg.parse_netstat(netstat, "IPReversePathFilter") == 7
    assert dg.parse_netstat(netstat, "Nope") is None
    assert dg.parse_route_get("10.79.9.1 via 10.77.9.30 dev eth0 src 10.77.9.20 uid 0") == (
        "10.77.9.30", "eth0")
    assert dg.parse_route_get("10.77.9.10 dev eth0 src 10.77.9.20") == (None, "eth0")


def test_route_removed_so_target_cannot_answer_at_all(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, answer=False), facts(route_via=None))
    assert d.broken is not None and d.broken.question == tree.ROUTE_QUESTION
    assert "via none" in d.broken.evidence and "ip route replace" in d.broken.fix


def test_nothing_listens_on_the_copied_port() -> None:
    d = tree.walk(tree.Captures(None, None, None),
                  facts(target_listeners=[("0.0.0.0", 8080), ("127.0.0.1", 80)]))
    assert broken(d) == "something listens on the copied ports of the target"
    assert d.broken is not None and f"{TARGET}:80" in d.broken.evidence
    assert "services[].target_port" in d.broken.fix
    # a listener on the target's own address counts; an unreadable table is skipped
    ok = tree.walk(tree.Captures(None, None, None), facts(target_listeners=[(TARGET, 80)]))
    assert ok.steps[5].status == "ok"
    unknown = tree.walk(tree.Captures(None, None, None), facts(target_listeners=None))
    assert unknown.steps[5].status == "skipped"


def test_target_refuses_every_copy_with_rst(tmp_path: Path) -> None:
    # the socket table was not readable (or the service died after it was read): the RSTs
    # in the capture name the refusal, instead of "the target answers"
    d = tree.walk(captures(tmp_path, refuse=True), facts(target_listeners=None))
    assert broken(d) == "the target accepts the copies (SYN-ACK, not RST)"
    assert d.broken is not None
    assert "5 RSTs and no SYN-ACK" in d.broken.evidence and f"{TARGET}:80" in d.broken.evidence


def test_accept_queue_overflow(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, repeat_synack=True), facts())
    assert broken(d) == ("the target's accept queue keeps up (no SYN-ACK repeated, no listen "
                         "overflow)")
    assert d.broken is not None and "5 SYN-ACKs repeated for 5" in d.broken.evidence
    by_counter = tree.walk(captures(tmp_path), facts(listen_overflows=12))
    assert by_counter.broken is not None and "ListenOverflows +12" in by_counter.broken.evidence


def test_fragmentation_needed_names_the_mtu(tmp_path: Path) -> None:
    d = tree.walk(captures(tmp_path, frag_needed=True), facts())
    assert broken(d) == "the copied packets fit the path to the target (MTU)"
    assert d.broken is not None and "tcpcopy -M" in d.broken.fix


def test_copies_bigger_than_the_targets_mtu(tmp_path: Path) -> None:
    """Full-size copies leave online, but the target's link takes less: named with the MTU
    to give tcpcopy (the big copies vanish on arrival, no ICMP comes back to online)."""
    c = captures(tmp_path, load=b"x" * 1400)
    d = tree.walk(c, facts(target_mtu=1000))
    assert broken(d) == "the copied packets fit the path to the target (MTU)"
    assert d.broken is not None and "target's link MTU is 1000" in d.broken.evidence
    assert "tcpcopy -M 1000" in d.broken.fix
    assert tree.walk(c, facts(target_mtu=1500)).broken is None
