"""Offline replay in the lab (tcpcopy --pcap): traffic recorded with tcpdump on the online host
is replayed later, against the live target through intercept, with nothing arriving at online
(root; own lab)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.copyrig import Rig, fidelity, settle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_replay_a_recorded_pcap_twice_faster(rig: Rig) -> None:
    pcap = rig.dir / "online.pcap"
    dump = rig.spawn("online", ["tcpdump", "-i", "eth0", "-n", "-U", "-s", "0", "-w", str(pcap),
                                "tcp port 80"], "tcpdump")
    wait_for(lambda: "listening on" in (rig.dir / "tcpdump.out").read_text(), 20,
             "tcpdump listening")
    res = rig.traffic("--requests", "300", "--mode", "mixed", "--connections", "3", "--rate",
                      "150", "--post-sizes", "0,1024,70000", "--seq-query")
    assert not res.get("errors"), res
    # let tcpdump write what it has read (-U: per packet) before stopping it: a SIGTERM loses
    # what is still in the kernel buffer, and cut requests cannot be copied
    _wait_stable(pcap)
    assert rig.stop(dump) == 0
    assert "0 packets dropped by kernel" in (rig.dir / "tcpdump.out").read_text()
    truth = rig.online_truth()
    assert sum(truth.values()) == 300
    rig.route_pool_via_assistant()
    rig.start_intercept()
    # the file goes twice (-T 2) at twice its speed (-a 2): every request is copied twice
    rig.start_tcpcopy(["--pcap", str(pcap), "-a", "2", "-T", "2", "--drain-timeout", "20"])
    tcpcopy = rig.procs[-1]
    assert tcpcopy.wait(90) == 0, (rig.dir / "tcpcopy.log").read_text()[-2000:]
    stats = rig.stats("tcpcopy")
    assert stats["state"] == "exited" and stats["offline"]["done"], stats
    off = stats["offline"]
    assert off["truncated"] == 0 and off["rounds"] == 2 and off["reset_at_round_end"] == 0, stats
    copies = settle(rig, 600, timeout=30)
    assert fidelity(truth + truth, copies) >= 0.999, (sum(copies.values()), stats["counters"])
    assert rig.online_truth() == truth                    # nothing was sent to online
    log = (rig.dir / "tcpcopy.log").read_text()
    assert "TC_OFFLINE mode" in log and "offline replay is complete" in log


def _wait_stable(path: Path, quiet: float = 1.0, timeout: float = 20) -> None:
    last, since = -1, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else -1
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} still growing after {timeout} s")
