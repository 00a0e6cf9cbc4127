"""tcpcopy beyond HTTP and under failure: redis copied command for command; intercept lost and
back with ``-L`` (tcpcopy survives, counts what it could not copy, copies again)."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Dict

import pytest

from tests.integration.copyrig import Rig, log_requests, settle, wait_for

pytestmark = pytest.mark.integration


def redis_calls(r: Rig, role: str) -> Dict[str, int]:
    out = r.ns(role, ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "INFO", "commandstats"]).stdout
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", out)}


def start_redis(r: Rig, role: str) -> None:
    d = r.dir / f"redis-{role}"
    d.mkdir()
    proc = r.spawn(role, ["redis-server", "--port", "6379", "--bind", "0.0.0.0",
                          "--protected-mode", "no", "--save", "", "--appendonly", "no",
                          "--dir", str(d), "--pidfile", str(d / "redis.pid"),
                          "--daemonize", "no"], f"redis-{role}")
    wait_for(lambda: proc.poll() is None and r.ns(role, ["redis-cli", "-h", "127.0.0.1", "PING"],
                                                  check=False).stdout.strip() == "PONG",
             15, f"redis on {role}")


def test_redis_commands_are_copied(rig: Rig) -> None:
    start_redis(rig, "online")
    start_redis(rig, "target")
    rig.route_pool_via_assistant()
    rig.start_intercept(port=6379)
    rig.start_tcpcopy(port=6379)
    before = redis_calls(rig, "target")
    res = rig.ns("client", ["redis-benchmark", "-h", rig.online, "-p", "6379", "-n", "20000",
                            "-c", "8", "-t", "set,get,incr,lpush", "-q"])
    assert res.returncode == 0, res.stderr
    online = redis_calls(rig, "online")
    want = sum(online.get(c, 0) for c in ("set", "get", "incr", "lpush"))
    assert want >= 80000

    def copied() -> int:
        now = redis_calls(rig, "target")
        return sum(now.get(c, 0) - before.get(c, 0) for c in ("set", "get", "incr", "lpush"))

    deadline = time.monotonic() + 30
    got = copied()
    while got < want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = copied()
    assert abs(got - want) <= want * 0.001, (got, want, rig.stats("tcpcopy").get("counters"))


def test_intercept_lost_and_back_with_lonely(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(extra=["-L", "--reconnect-interval", "0.5"])
    tcpcopy = rig.procs[-1]
    intercept = rig.procs[-2]
    rig.traffic("--requests", "200", "--mode", "new", "--get-paths", "/?phase=1")
    wait_for(lambda: sum(n for k, n in rig.target_copies().items() if "phase=1" in k[1]) >= 200,
             20, "phase 1 copies")

    rig.stop(intercept)
    wait_for(lambda: all(i["connections"] == 0 for i in rig.stats("tcpcopy")["intercepts"]),
             10, "tcpcopy notices the lost intercept")
    rig.traffic("--requests", "100", "--mode", "new", "--get-paths", "/?phase=2")
    # the sessions of the outage are held (engine.session.hold), not refused
    wait_for(lambda: rig.stats("tcpcopy")["counters"]["sessions_held"] >= 100, 10,
             "tcpcopy holds the sessions of the outage")
    assert tcpcopy.poll() is None, "tcpcopy exited although -L was given"
    assert rig.stats("tcpcopy")["counters"]["sessions_no_intercept"] == 0

    rig.start_intercept(name="intercept2")
    wait_for(lambda: rig.stats("tcpcopy")["counters"]["channel_reconnects"] >= 1, 15,
             "tcpcopy reconnects")
    # ... and resumed once intercept is back: phase 2 is copied after all
    wait_for(lambda: sum(n for k, n in rig.target_copies().items() if "phase=2" in k[1]) >= 100,
             20, "the held phase 2 copies")
    assert rig.stats("tcpcopy")["counters"]["sessions_resumed"] >= 100
    rig.traffic("--requests", "200", "--mode", "new", "--get-paths", "/?phase=3")
    settle(rig, 500, timeout=20)
    phase3 = sum(n for k, n in rig.target_copies().items() if "phase=3" in k[1])
    assert phase3 >= 200 * 0.999
    assert tcpcopy.poll() is None


def test_tcpcopy_exits_when_intercept_lost_without_lonely(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy()
    tcpcopy = rig.procs[-1]
    rig.stop(rig.procs[-2])
    assert wait_for(lambda: tcpcopy.poll() is not None, 10, "tcpcopy exit") and \
        tcpcopy.returncode == 1
    assert rig.stats("tcpcopy")["state"] == "exited"
    assert not (rig.dir / "tcpcopy.pid").exists()
    assert log_requests(rig.lab.host("target").access_log) is not None
    subprocess.run(["true"], check=True)
