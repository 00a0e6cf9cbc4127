"""`tcpcopy -o IFACE`: copies leave at the data-link layer, bypassing online's IP stack.

An iptables DROP in online's OUTPUT chain for the copied flow would stop copies sent through a
raw IP socket; frames injected with `-o` never traverse it, so the target still gets them all.
"""

from __future__ import annotations

import pytest

from tests.integration.copyrig import Rig, fidelity, settle, wait_for

pytestmark = pytest.mark.integration


def _drop_counter(rig: Rig, rule: list[str]) -> int:
    out = rig.ns("online", ["iptables", "-L", "OUTPUT", "-v", "-x", "-n"]).stdout
    for line in out.splitlines():
        fields = line.split()
        if "DROP" in fields and rig.target in fields:
            return int(fields[0])
    raise AssertionError(f"DROP rule {rule} not found in:\n{out}")


def test_datalink_send_bypasses_online_ip_stack(rig: Rig) -> None:
    mac = rig.ns("target", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    rule = ["-d", rig.target, "-p", "tcp", "--dport", "80", "-j", "DROP"]
    rig.ns("online", ["iptables", "-I", "OUTPUT", *rule])
    rig.undo.append(["online", "iptables", "-D", "OUTPUT", *rule])
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.engine("online", "tcpcopy", ["-x", f"80-{rig.target}:80@{mac}", "-o", "eth0",
                                     "-s", rig.assistant, "-c", f"{rig.fake_prefix}x"],
               "tcpcopy")

    wait_for(lambda: any(i.get("connections", 0) > 0
                         for i in rig.stats("tcpcopy").get("intercepts", [])),
             20, "tcpcopy connected to intercept")
    res = rig.traffic("--requests", "300", "--mode", "mixed", "--connections", "2",
                      "--post-sizes", "0,4096", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    copies = settle(rig, sum(truth.values()))
    counters = rig.stats("tcpcopy").get("counters", {})
    assert fidelity(truth, copies) >= 0.999, counters
    assert counters.get("send_errors", 0) == 0, counters
    assert _drop_counter(rig, rule) == 0
