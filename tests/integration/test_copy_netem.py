"""Network conditions on the copy path only (`--netem-*` in tcpcopy and intercept), with the
real daemons in a lab: the target's response time seen by the copier shifts by the delay, lost
copies are retransmitted, and the online server is not slowed down."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.integration.copyrig import Rig, fidelity, settle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RT = re.compile(r'" \d+ \d+ \d+ "[^"]*" (\d+\.\d+) ')


def online_times(rig: Rig) -> list:
    path = rig.lab.host("online").access_log
    return [float(m.group(1)) for line in path.read_text().splitlines()
            if (m := RT.search(line))]


def run(rig: Rig, requests: int, *flags: str, intercept: tuple = ()) -> dict:
    rig.route_pool_via_assistant()
    rig.start_intercept(extra=intercept)
    rig.start_tcpcopy(list(flags))
    res = rig.traffic("--requests", str(requests), "--mode", "keepalive", "--connections", "4",
                      "--rate", "200", "--seq-query")
    assert not res.get("errors"), res
    truth = rig.online_truth()
    assert sum(truth.values()) == requests
    copies = settle(rig, requests, timeout=40)
    assert fidelity(truth, copies) >= 0.999, (sum(copies.values()), rig.stats("tcpcopy"))
    return wait_for(lambda: (s := rig.stats("tcpcopy")) and
                    s["target_response_ms"]["count"] >= requests * 0.99 and s,
                    10, "the latency histogram")


def test_delay_on_the_copies_shifts_the_target_latency_and_not_online(rig: Rig) -> None:
    stats = run(rig, 400, "--netem-delay", "50", "--netem-jitter", "5")
    lat = stats["target_response_ms"]
    print("netem delay 50:", lat)
    assert 45 <= lat["p50"] <= 62, lat          # the lab's target answers in < 1 ms
    assert stats["netem"]["delay_ms"] == 50 and stats["counters"]["netem_delayed"] >= 400
    assert max(online_times(rig)) < 0.02        # the online server was never delayed


def test_lost_copies_are_retransmitted(rig: Rig) -> None:
    stats = run(rig, 400, "--netem-delay", "5", "--netem-loss", "2",
                intercept=("--netem-delay", "5"))
    c = stats["counters"]
    print("netem loss 2:", {k: c[k] for k in ("netem_dropped", "retransmit", "requests_sent")},
          stats["target_response_ms"])
    assert c["netem_dropped"] > 0 and c["retransmit"] >= 1, c
    assert stats["target_response_ms"]["p50"] >= 9, stats["target_response_ms"]


def test_a_running_tcpcopy_takes_new_conditions_on_sighup(rig: Rig, tmp_path: Path) -> None:
    """`--netem-file`: a drill changes the conditions of a running daemon (no restart, no
    session lost): 200 requests without, then the file says 40 ms and SIGHUP, 200 more."""
    spec = tmp_path / "netem.json"
    before = run(rig, 200, "--netem-file", str(spec))
    n1, mean1 = before["target_response_ms"]["count"], before["target_response_ms"]["mean"]
    assert mean1 < 10, before["target_response_ms"]
    spec.write_text('{"delay_ms": 40}')
    os.kill(rig.procs[-1].pid, signal.SIGHUP)
    wait_for(lambda: (rig.stats("tcpcopy").get("netem") or {}).get("delay_ms") == 40, 10,
             "tcpcopy to take the new conditions")
    res = rig.traffic("--requests", "200", "--mode", "keepalive", "--connections", "4",
                      "--rate", "200", "--seq-query")
    assert not res.get("errors"), res
    copies = settle(rig, 400, timeout=40)
    assert fidelity(rig.online_truth(), copies) >= 0.999
    after = wait_for(lambda: (s := rig.stats("tcpcopy")) and
                     s["target_response_ms"]["count"] >= 396 and s, 10, "latencies")
    lat = after["target_response_ms"]
    mean2 = (lat["mean"] * lat["count"] - mean1 * n1) / (lat["count"] - n1)
    assert 36 <= mean2 <= 50, (mean1, mean2, lat)
