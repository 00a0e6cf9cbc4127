"""Fidelity of tcpcopy + intercept in the local lab (root; each test builds its own lab).

The rig (tests/integration/copyrig.py; fixture `rig` in conftest.py) starts the engine directly
in the lab namespaces; the truth is the online nginx access log, the copy is the target's.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.integration.copyrig import Rig, clients_of, fidelity, log_requests, settle, wait_for

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("extra", [(), ("--gather-ms", "2")], ids=["plain", "gather"])
def test_three_server_keepalive_and_new_connections(rig: Rig, extra: tuple[str, ...]) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept(extra=extra)
    rig.start_tcpcopy(extra=extra)
    tcpdump = rig.spawn("client", ["tcpdump", "-n", "-i", "eth0", "-w",
                                   str(rig.dir / "client.pcap"),
                                   f"src host {rig.target} or src host {rig.assistant}"],
                        "tcpdump")
    time.sleep(1.0)                 # tcpdump needs a moment to attach
    ka = rig.traffic("--requests", "2000", "--mode", "keepalive", "--connections", "4",
                     "--post-sizes", "0,1024,65536", "--seq-query")
    big = rig.traffic("--requests", "20", "--mode", "keepalive", "--get-paths", "",
                      "--post-sizes", "1048576,524288", "--seq-query")
    new = rig.traffic("--requests", "2000", "--mode", "new", "--connections", "4",
                      "--post-sizes", "0,100,20000", "--seq-query")
    assert not ka.get("errors") and not new.get("errors") and not big.get("errors")
    truth = rig.online_truth()
    assert sum(truth.values()) == 4020
    copies = settle(rig, 4020)
    ratio = fidelity(truth, copies)
    rig.stop(tcpdump)
    st = rig.stats("tcpcopy")
    assert ratio >= 0.999, (ratio, st.get("counters"))
    clients = clients_of(rig.lab.host("target").access_log)
    assert all(a.startswith(rig.fake_prefix) for a in clients), clients
    leaked = subprocess.run(["tcpdump", "-n", "-r", str(rig.dir / "client.pcap")],
                            capture_output=True, text=True, check=False).stdout
    assert leaked.strip() == "", leaked[:500]
    # intercept forgets the route of every session gone for good (CLIENT_DEL after its linger):
    # its table holds the live sessions, not every tuple ever copied (P2: it grew to ~28k)
    assert rig.stats("intercept")["counters"]["routes_added"] >= 2000   # a route per session
    wait_for(lambda: rig.stats("intercept").get("routes", 10**9) <= 8, 30,
             "intercept's routes of ended sessions forgotten")


def test_session_open_before_tcpcopy_is_copied_with_faked_handshake(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    # one keep-alive connection, 1 request every 0.1 s for 6 s; tcpcopy joins after ~1.5 s
    gen = rig.spawn("client", [sys.executable, "-m", "labctl.lab.traffic", "--url",
                               f"http://{rig.online}", "--requests", "60", "--rate", "10",
                               "--mode", "keepalive", "--seq-query", "--json"], "gen")
    time.sleep(1.5)
    rig.start_tcpcopy()
    assert gen.wait(30) == 0
    copies = settle(rig, 40, timeout=10)
    n = sum(copies.values())
    st = rig.stats("tcpcopy")["counters"]
    assert st["recon_for_no_syn"] >= 1
    assert n >= 40, (n, st)        # everything after tcpcopy started (~45 requests)


def test_a_segment_lost_to_the_capture_costs_its_request_not_the_connection(rig: Rig) -> None:
    """Capture losses (a kernel drop) made deterministic: the filter leaves out every client
    packet whose IP id ends in 0b00111 (1 in 32 of each connection's packets: requests, ACKs,
    SYNs). Each lost request segment leaves a hole the client never fills; the copy starts
    again at the next request (``clt_gap_resync``) instead of losing the rest of the
    keep-alive connection (before: 2.6 % copied; after: 96.9 %)."""
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(extra=["-F", "tcp and dst port 80 and (ip[4:2] & 0x1f) != 7"])
    res = rig.traffic("--requests", "1600", "--mode", "keepalive", "--connections", "4",
                      "--post-sizes", "0,1024", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    assert sum(truth.values()) == 1600
    copies = settle(rig, 1600, timeout=20)
    ratio = fidelity(truth, copies)
    st = rig.stats("tcpcopy")["counters"]
    print(f"capture losses: ratio {ratio:.4f}, clt_gap {st['clt_gap']}, "
          f"clt_gap_resync {st['clt_gap_resync']}, copies {sum(copies.values())}")
    assert st["clt_gap_resync"] >= 4, st
    # what is lost is the requests whose first segment was left out (~3 %)
    assert ratio >= 0.90, (ratio, st)


def test_two_server_topology_with_iptables_drop(rig: Rig) -> None:
    online, target = rig.online, rig.target
    rule = ["-s", target, "-p", "tcp", "--sport", "80", "-j", "DROP"]
    rig.ns("online", ["iptables", "-I", "INPUT", *rule])
    rig.undo.append(["online", "iptables", "-D", "INPUT", *rule])
    rig.start_intercept(role="target")
    rig.start_tcpcopy(fake=online, server=target)
    res = rig.traffic("--requests", "1000", "--mode", "mixed", "--connections", "4",
                      "--post-sizes", "0,5000", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    copies = wait_for(lambda: (lambda c: c if sum(c.values()) >= 1000 else None)(
        log_requests(rig.lab.host("target").access_log, online)), 30, "copies on target")
    assert fidelity(truth, copies) >= 0.999
