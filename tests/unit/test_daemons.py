"""labctl.hosts.daemons: launch argv, readiness waits (fake clock), graceful stop, status."""

from __future__ import annotations

import json

import pytest

from labctl.errors import RemoteError
from labctl.hosts import daemons
from labctl.transport.fake import FakeTransport
from tests.unit.fake_poller import fake_poller

HDIR = "/s/demo/assistant"
PYZ = HDIR + "/labctl-engine.pyz"
SPEC = daemons.DaemonSpec("intercept", ("-i", "eth0", "-p", "36524"))


def test_launch_argv_detached_and_systemd() -> None:
    det = daemons.launch_argv(PYZ, HDIR, "demo", SPEC, systemd=False)
    assert det[:3] == ["python3", PYZ, "detach"]
    # the daemon starts with PyPy's small nursery: no second start of the interpreter
    assert det[det.index("--env") + 1] == "PYPY_GC_NURSERY=4MB"
    inner = det[det.index("--") + 1:]
    assert inner[:3] == ["python3", PYZ, "intercept"]
    assert inner[inner.index("--pid-file") + 1] == HDIR + "/intercept.pid"
    assert inner[inner.index("--stats-file") + 1] == HDIR + "/intercept.stats"
    sysd = daemons.launch_argv(PYZ, HDIR, "demo", SPEC, systemd=True)
    assert sysd[:3] == ["systemd-run", "--unit", "labctl-demo-intercept"]
    assert sysd[sysd.index("python3"):] == inner
    assert "--setenv=PYPY_GC_NURSERY=4MB" in sysd[:sysd.index("python3")]


def _rec() -> daemons.DaemonRecord:
    return daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)


def _alive(fake: FakeTransport, pid: int = 77, times: int | None = None) -> None:
    fake.on(["cat", HDIR + "/intercept.pid"], stdout=f"{pid}\n")
    fake.on(["cat", f"/proc/{pid}/cmdline"], exit_code=1)
    fake.on(["cat", f"/proc/{pid}/cmdline"],
            stdout=f"python3\0{PYZ}\0intercept\0--stats-file\0{HDIR}/intercept.stats\0",
            times=times)


def test_start_takes_pid_from_detach_output() -> None:
    rec = _rec()
    fake = FakeTransport("assistant").on_prefix(["rm", "-f"]).on(rec.argv, stdout="77\n")
    daemons.start(fake, rec, now=lambda: 3.0)
    assert rec.pid == 77 and rec.started_at == 3.0


def test_wait_listening_polls_ss() -> None:
    rec = _rec()
    fake = FakeTransport("assistant")
    _alive(fake)
    ss = ["ss", "-Hltn", "sport", "=", ":36524"]
    fake.on(ss, stdout="LISTEN 0 128 10.77.1.30:36524 0.0.0.0:*\n")
    fake.on(ss, stdout="", times=2)
    daemons.wait_listening(fake, rec, 36524, timeout=10, poller=fake_poller())
    assert fake.commands.count(tuple(ss)) == 3


def test_wait_listening_fails_fast_with_log_tail_when_daemon_died() -> None:
    rec = _rec()
    fake = FakeTransport("assistant")
    fake.on_prefix(["ss"], stdout="").on_prefix(["cat"], exit_code=1)
    fake.on_prefix(["tail"], stdout="2024/01/01 00:00:00 +000 [error] bind: address in use")
    with pytest.raises(RemoteError, match="address in use"):
        daemons.wait_listening(fake, rec, 36524, timeout=10, poller=fake_poller())


def test_wait_connected_reads_stats_until_connected() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", daemons.DaemonSpec("tcpcopy", ()), False)
    fake = FakeTransport("online")
    fake.on(["cat", HDIR + "/tcpcopy.pid"], stdout="5\n")
    fake.on(["cat", "/proc/5/cmdline"], stdout=f"tcpcopy {HDIR}/tcpcopy.stats")
    good = {"intercepts": [{"addr": "10.77.1.30:36524", "connections": 2}], "counters": {}}
    fake.on(["cat", HDIR + "/tcpcopy.stats"], stdout=json.dumps(good))
    fake.on(["cat", HDIR + "/tcpcopy.stats"], stdout=json.dumps(
        {"intercepts": [{"addr": "x", "connections": 0}]}), times=2)
    assert daemons.wait_connected(fake, rec, timeout=10, poller=fake_poller()) == good


def test_wait_connected_times_out() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", daemons.DaemonSpec("tcpcopy", ()), False)
    fake = FakeTransport("online")
    fake.on(["cat", HDIR + "/tcpcopy.pid"], stdout="5\n")
    fake.on(["cat", "/proc/5/cmdline"], stdout=f"tcpcopy {HDIR}/tcpcopy.stats")
    fake.on(["cat", HDIR + "/tcpcopy.stats"], exit_code=1)
    with pytest.raises(RemoteError, match="timed out after 3s"):
        daemons.wait_connected(fake, rec, timeout=3, poller=fake_poller())


def test_is_connected() -> None:
    assert not daemons.is_connected(None)
    assert not daemons.is_connected({"intercepts": []})
    assert not daemons.is_connected({"intercepts": [{"connections": 1}, {"connections": 0}]})
    assert daemons.is_connected({"intercepts": [{"connections": 1}]})


def test_stop_term_then_kill_after_grace_and_keeps_final_stats() -> None:
    rec = _rec()
    fake = FakeTransport("assistant")
    _alive(fake)  # never exits on TERM
    fake.on(["kill", "-TERM", "77"]).on(["kill", "-KILL", "77"])
    fake.on(["cat", HDIR + "/intercept.stats"], stdout='{"state": "exited", "counters": {}}')
    daemons.stop(fake, rec, grace=3, poller=fake_poller(), now=lambda: 9.0)
    assert fake.commands.index(("kill", "-TERM", "77")) < fake.commands.index(
        ("kill", "-KILL", "77"))
    assert rec.final_stats == {"state": "exited", "counters": {}} and rec.stopped_at == 9.0


def test_stop_graceful_no_kill() -> None:
    rec = _rec()
    fake = FakeTransport("assistant")
    _alive(fake, times=1)
    fake.on(["kill", "-TERM", "77"])
    fake.on(["cat", HDIR + "/intercept.stats"], exit_code=1)
    daemons.stop(fake, rec, grace=3, poller=fake_poller())
    assert ("kill", "-KILL", "77") not in fake.commands


def test_summarize() -> None:
    stats = {"started_at": 100.0, "state": "running", "listen": "10.77.1.30:36524",
             "counters": {"captured": 5, "resp_routed": 4, "other": 1}}
    st = daemons.summarize("intercept", 77, stats, 130.0)
    assert st.alive and st.uptime == 30.0 and st.counters == {"captured": 5, "resp_routed": 4}
    assert st.extra == {"listen": "10.77.1.30:36524"}
    dead = daemons.summarize("intercept", None, {"state": "exited"}, 130.0)
    assert not dead.alive and dead.uptime is None and dead.state == "exited"
    # no pid, and its stats file last said running: it died without exiting (kill -9)
    killed = daemons.summarize("intercept", None, stats, 130.0)
    assert not killed.alive and killed.state == "dead" and killed.counters["captured"] == 5


def test_observe_is_one_round_trip_and_never_takes_a_reused_pid() -> None:
    rec = _rec()
    rec.pid = 77
    fake = FakeTransport("assistant")
    _alive(fake)
    fake.on(["cat", HDIR + "/intercept.stats"], stdout='{"state": "running"}')
    fake.on(["ss", "-Hltn"], stdout="LISTEN\n")
    look = daemons.observe(fake, rec, extra=[["ss", "-Hltn"]])
    assert (look.pid, look.stats, look.extra[0].stdout) == (77, {"state": "running"}, "LISTEN\n")
    assert fake.commands == [("cat", HDIR + "/intercept.pid"), ("ss", "-Hltn"),
                             ("cat", "/proc/77/cmdline"), ("cat", HDIR + "/intercept.stats")]
    assert not look.final
    # pid 77 now belongs to another program: not ours, and the stats (read after) are final
    fake.on(["cat", "/proc/77/cmdline"], stdout="sleep\x00100\x00")
    again = daemons.observe(fake, rec)
    assert again.pid is None and again.final and again.stats == {"state": "running"}


STAT = "77 (pypy3) {state} 1 76 76 0 -1 {flags} 310 0 0 0 1 0 0 0 20 0 1 0 650 0 0\n"


def test_a_daemon_caught_inside_an_exec_is_starting_not_dead() -> None:
    # detach execs the daemon and PyPy's daemon execs itself once more: between the switch to
    # the new image and its argv, /proc/PID/cmdline reads empty (seen on a busy 16-host up)
    rec = _rec()
    fake = FakeTransport("assistant")
    _alive(fake)
    fake.on(["cat", "/proc/77/cmdline"], stdout="", times=1)
    fake.on(["cat", "/proc/77/stat"], stdout=STAT.format(state="R", flags=4194304))
    ss = ["ss", "-Hltn", "sport", "=", ":36524"]
    fake.on(ss, stdout="LISTEN 0 128 10.77.1.30:36524 0.0.0.0:*\n")
    fake.on(ss, stdout="", times=2)
    daemons.wait_listening(fake, rec, 36524, timeout=10, poller=fake_poller())
    assert fake.commands.count(("cat", "/proc/77/stat")) == 1   # only when cmdline was empty


@pytest.mark.parametrize("state, flags", [("Z", 4227084), ("S", 0x00200040)],
                         ids=["zombie", "kernel-thread"])
def test_an_empty_cmdline_of_a_zombie_or_kernel_thread_is_not_the_daemon(
        state: str, flags: int) -> None:
    rec = _rec()
    rec.pid = 77
    fake = FakeTransport("assistant")
    fake.on(["cat", HDIR + "/intercept.pid"], stdout="77\n")
    fake.on(["cat", "/proc/77/cmdline"], stdout="")
    fake.on(["cat", "/proc/77/stat"], stdout=STAT.format(state=state, flags=flags))
    ss = ["ss", "-Hltn", "sport", "=", ":36524"]
    fake.on(ss, stdout="")
    fake.on(["tail", "-n", "15", HDIR + "/intercept.log", HDIR + "/intercept.log.out"],
            stdout="boom\n")
    with pytest.raises(RemoteError, match="exited during start-up"):
        daemons.wait_listening(fake, rec, 36524, timeout=10, poller=fake_poller())
