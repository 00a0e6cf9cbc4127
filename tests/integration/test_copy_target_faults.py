"""The engine tells the target's own failures apart, and survives a local firewall that refuses
some of its sends (real daemons in a lab, started directly)."""

from __future__ import annotations

import pytest

from tests.integration.copyrig import Rig, fidelity, settle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_sends_refused_by_the_online_firewall_are_retried(rig: Rig) -> None:
    """5 % of tcpcopy's sends to the target refused by online's OUTPUT chain (EPERM, the C
    tool's "raw fd (Operation not permitted)"): every request is still copied."""
    rule = ["OUTPUT", "-p", "tcp", "-d", str(rig.target), "--dport", "80", "-m", "statistic",
            "--mode", "random", "--probability", "0.05", "-j", "DROP"]
    rig.ns("online", ["iptables", "-w", "-A", *rule])
    rig.undo.append(["online", "iptables", "-w", "-D", *rule])
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy()
    res = rig.traffic("--requests", "800", "--mode", "mixed", "--connections", "4",
                      "--rate", "300", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    assert sum(truth.values()) == 800
    copies = settle(rig, 800, timeout=60, quiet=6.0)
    c = rig.stats("tcpcopy")["counters"]
    assert fidelity(truth, copies) >= 0.999, (sum(copies.values()), c)
    # a refused RST or ACK of a closing session is not retried (nothing waits on it): most
    # refusals are retried (58 of 65 in one CI run, 0.89), not all
    assert c["send_errors"] > 0 and c["send_retried"] >= 0.75 * c["send_errors"], c
    assert c["sessions_shed"] == 0, c


def test_a_target_port_where_nothing_listens_is_counted_as_refused(rig: Rig) -> None:
    """Copies mapped to a target port with no listener: the target answers each SYN with a
    RST; tcpcopy counts the refusals and ends those sessions as refused, not as silent."""
    rig.route_pool_via_assistant()
    rig.start_intercept(port=81)
    rig.engine("online", "tcpcopy", ["-x", f"80-{rig.target}:81", "-s", rig.assistant, "-c",
                                     f"{rig.fake_prefix}x"], "tcpcopy")
    wait_for(lambda: any(i.get("connections", 0) > 0
                         for i in rig.stats("tcpcopy").get("intercepts", [])),
             20, "tcpcopy connected")
    res = rig.traffic("--requests", "20", "--mode", "new", "--connections", "2",
                      "--rate", "50", "--seq-query")
    assert not res.get("errors"), res
    c = wait_for(lambda: (c := rig.stats("tcpcopy")["counters"])["sessions_refused"] >= 20
                 and c, 20, "20 sessions ended as refused")
    assert c["target_refused"] >= 20 and c["sessions_no_synack"] == 0, c
