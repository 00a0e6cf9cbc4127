"""tcpcopy modes in the lab that were only unit-tested: ``-n`` replicas, ``-r`` sampling and
session-table shedding (root; each test builds its own lab, bounded to well under a minute)."""

from __future__ import annotations

import time

import pytest

from tests.integration.copyrig import Rig, fidelity, settle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_two_replicas_double_every_request_without_tuple_collisions(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(["-n", "2"])
    res = rig.traffic("--requests", "400", "--mode", "mixed", "--connections", "4",
                      "--rate", "400", "--post-sizes", "0,1024", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    assert sum(truth.values()) == 400
    copies = settle(rig, 800, timeout=40)
    st = rig.stats("tcpcopy")["counters"]
    doubled = truth + truth
    assert fidelity(doubled, copies) >= 0.999, (sum(copies.values()), st)
    assert sum(copies.values()) == 800, (sum(copies.values()), st)
    assert st["tuple_refused"] == 0 and st["resp_rst"] == 0, st
    assert st["sessions_created"] == 2 * st["clt_syn"] - 2 * st["clt_con_retrans"], st


def test_sampling_copies_the_requested_share_of_one_clients_connections(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(["-r", "30"])
    res = rig.traffic("--requests", "1000", "--mode", "new", "--connections", "4",
                      "--rate", "400", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    assert sum(truth.values()) == 1000
    copies = settle(rig, 1000, timeout=30, quiet=3.0)
    n = sum(copies.values())
    st = rig.stats("tcpcopy")["counters"]
    # one client, 1,000 consecutive ephemeral ports: ~4.3 standard deviations either side
    assert 240 <= n <= 360, (n, st)
    assert st["sampled_out"] > 0 and st["sessions_created"] == n, st
    assert fidelity(truth, copies) == pytest.approx(n / 1000)   # copies are real requests


def test_session_cap_sheds_and_counts_and_keeps_copying(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(["--max-sessions", "2"])
    proc = rig.procs[-1]
    # 6 keep-alive connections at once: only 2 fit in the table
    res = rig.traffic("--requests", "300", "--mode", "keepalive", "--connections", "6",
                      "--rate", "300", "--seq-query")
    assert not res.get("errors"), res
    first = settle(rig, 300, timeout=20, quiet=3.0)
    st = rig.stats("tcpcopy")["counters"]
    assert st["table_full"] >= 4 and proc.poll() is None, st
    assert 0 < sum(first.values()) < 300, (sum(first.values()), st)
    # the shed connections are gone; once the copied ones end, new sessions fit again
    wait_for(lambda: rig.stats("tcpcopy").get("sessions_active") == 0, 20, "sessions released")
    before = sum(first.values())
    res = rig.traffic("--requests", "100", "--mode", "keepalive", "--connections", "2",
                      "--seq-query")
    assert not res.get("errors"), res
    deadline = time.monotonic() + 20
    while sum(rig.target_copies().values()) < before + 100 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert sum(rig.target_copies().values()) == before + 100
    assert proc.poll() is None and rig.stats("tcpcopy").get("state") == "running"
