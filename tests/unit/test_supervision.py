"""labctl.hosts.supervision and supervised daemons (engine.supervise / up --supervise): the
launch argv on systemd and non-systemd hosts, the journal record, the dead-man's undo (the
supervisor first), `stop` ending the supervisor before the daemon, `status` with restarts,
the inventory key and its rendering (table and --prometheus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from engine.rollback import roll_back
from labctl.cli import main
from labctl.cli import ops as cli_ops
from labctl.cli.ops import supervised
from labctl.cli.render.ops import status_prometheus, status_renderable
from labctl.errors import RemoteError
from labctl.hosts import daemons
from labctl.hosts import supervision as sv
from labctl.hosts.journal import Journal
from labctl.inventory.load import parse_inventory
from labctl.model import Readiness
from labctl.transport.fake import FakeTransport
from labctl.up.down import HostStatus, StatusReport
from labctl.up.launch import daemon_change, record_of
from labctl.up.trust import journal_problems
from tests.unit.fake_poller import fake_poller

HDIR = "/s/demo/online1"
PYZ = HDIR + "/labctl-engine.pyz"
SPEC = daemons.DaemonSpec("tcpcopy", ("-x", "80-10.0.0.3:80"), supervise=True)
SUP_PID = HDIR + "/tcpcopy.supervisor.pid"
SUP_STATE = HDIR + "/tcpcopy.supervisor.json"
ROOT = Path(__file__).resolve().parents[2]
_INVENTORY = (ROOT / "inventories/staging.yaml").read_text()


def test_engine_supervised_argv_wraps_the_daemon_in_supervise() -> None:
    argv = daemons.launch_argv(PYZ, HDIR, "demo", SPEC, systemd=False)
    assert argv[:3] == ["python3", PYZ, "detach"]
    assert argv[argv.index("--pid-file") + 1] == SUP_PID
    sup = argv[argv.index("--") + 1:]
    assert sup[:3] == ["python3", PYZ, "supervise"]
    assert sup[sup.index("--state-file") + 1] == SUP_STATE
    assert int(sup[sup.index("--max-log-bytes") + 1]) == sv.MAX_LOG_BYTES
    inner = sup[sup.index("--") + 1:]
    assert inner == daemons.engine_argv(PYZ, HDIR, SPEC)
    plain = daemons.launch_argv(PYZ, HDIR, "demo",
                                daemons.DaemonSpec("tcpcopy", SPEC.args), systemd=False)
    assert "supervise" not in plain


def test_systemd_supervised_unit_restarts_on_failure() -> None:
    argv = daemons.launch_argv(PYZ, HDIR, "demo", SPEC, systemd=True)
    assert argv[:3] == ["systemd-run", "--unit", "labctl-demo-tcpcopy"]
    assert "--property=Restart=on-failure" in argv
    assert f"--property=RestartSec={sv.RESTART_SEC}" in argv
    assert "supervise" not in argv          # systemd restarts it, no engine supervisor
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=True)
    assert rec.supervisor == "systemd" and not rec.supervisor_pid_file
    assert daemons.undo_argvs(rec) == [["systemctl", "stop", "labctl-demo-tcpcopy"]]


def test_record_and_dead_man_undo_stop_the_supervisor_first() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)
    assert (rec.supervisor, rec.supervisor_pid_file, rec.supervisor_state_file) == (
        "engine", SUP_PID, SUP_STATE)
    undo = daemons.undo_argvs(rec)
    assert undo[0][:4] == ["pkill", "-TERM", "-F", SUP_PID]
    assert undo[0][5] == daemons.ere_literal(SUP_STATE)
    assert undo[1][:4] == ["pkill", "-TERM", "-F", HDIR + "/tcpcopy.pid"]
    # the journal round-trips it and the trust check accepts it (and refuses a stray file)
    j = Journal("demo", "online1", "r1", daemons=[rec])
    back = Journal.from_json(j.to_json()).daemons[0]
    assert back == rec
    assert journal_problems(j, "demo", "online1", HDIR, "LABCTL-demo") == []
    rec.supervisor_state_file = "/etc/passwd"
    assert journal_problems(j, "demo", "online1", HDIR, "LABCTL-demo")


def test_plan_change_carries_the_supervisor_to_the_journal_record() -> None:
    inv = parse_inventory(_INVENTORY)
    change = daemon_change(inv, "online1", SPEC, Readiness("connected"), systemd=False)
    rec = record_of(change)
    assert rec.supervisor == "engine" and rec.supervisor_state_file.endswith(
        "/online1/tcpcopy.supervisor.json")
    assert change.undo[0][0] == "pkill" and "supervisor" in change.undo[0][3]




def test_inventory_key_and_the_flag() -> None:
    inv = parse_inventory(_INVENTORY)
    assert inv.engine.supervise is False
    assert supervised(inv, True).engine.supervise is True
    assert supervised(inv, False) is inv
    on = parse_inventory(_INVENTORY.replace("engine: {", "engine: {supervise: true, ", 1))
    assert on.engine.supervise is True


def _supervisor_alive(fake: FakeTransport, pid: int = 40, times: int | None = None) -> None:
    fake.on(["cat", SUP_PID], stdout=f"{pid}\n")
    fake.on(["cat", f"/proc/{pid}/cmdline"], exit_code=1)
    fake.on(["cat", f"/proc/{pid}/cmdline"],
            stdout=f"python3\0{PYZ}\0supervise\0--state-file\0{SUP_STATE}\0--\0tcpcopy\0",
            times=times)


def _daemon_alive(fake: FakeTransport, pid: int = 41, times: int | None = None) -> None:
    fake.on(["cat", HDIR + "/tcpcopy.pid"], stdout=f"{pid}\n")
    fake.on(["cat", f"/proc/{pid}/cmdline"], exit_code=1)
    fake.on(["cat", f"/proc/{pid}/cmdline"],
            stdout=f"python3\0{PYZ}\0tcpcopy\0--stats-file\0{HDIR}/tcpcopy.stats\0", times=times)


def test_start_keeps_the_supervisor_pid_apart_from_the_daemon_pid() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)
    fake = FakeTransport("online1").on_prefix(["rm", "-f"]).on(rec.argv, stdout="40\n")
    daemons.start(fake, rec, now=lambda: 3.0)
    assert rec.supervisor_pid == 40 and rec.pid is None
    rm = next(c for c in fake.commands if c[:2] == ("rm", "-f"))
    assert SUP_STATE in rm and HDIR + "/tcpcopy.pid" in rm


def test_stop_ends_the_supervisor_before_the_daemon() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)
    fake = FakeTransport("online1")
    _supervisor_alive(fake, times=2)        # exits once TERMed (passing TERM to the daemon)
    _daemon_alive(fake, times=0)
    fake.on(["kill", "-TERM", "40"])
    fake.on(["cat", HDIR + "/tcpcopy.stats"], stdout='{"state": "exited", "counters": {}}')
    daemons.stop(fake, rec, grace=3, poller=fake_poller(), now=lambda: 9.0)
    kills = [c for c in fake.commands if c[0] == "kill"]
    assert kills == [("kill", "-TERM", "40")]
    assert rec.final_stats == {"state": "exited", "counters": {}} and rec.stopped_at == 9.0


def test_stop_falls_back_to_the_daemon_when_the_supervisor_is_gone() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)
    fake = FakeTransport("online1")
    fake.on(["cat", SUP_PID], exit_code=1)
    _daemon_alive(fake, times=2)
    fake.on(["kill", "-TERM", "41"])
    fake.on(["cat", HDIR + "/tcpcopy.stats"], exit_code=1)
    daemons.stop(fake, rec, grace=3, poller=fake_poller())
    assert [c for c in fake.commands if c[0] == "kill"] == [("kill", "-TERM", "41")]


def test_status_reports_restarts_and_restarting() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)
    fake = FakeTransport("online1")
    _supervisor_alive(fake)
    fake.on(["cat", HDIR + "/tcpcopy.pid"], exit_code=1)       # between two runs
    fake.on(["cat", SUP_STATE], stdout=json.dumps({"restarts": 2, "last_exit":
                                                   "signal 9 (SIGKILL)"}))
    fake.on(["cat", HDIR + "/tcpcopy.stats"], stdout='{"state": "running", "counters": {}}')
    st = daemons.status(fake, rec)
    assert (st.supervisor, st.supervisor_alive, st.restarts, st.last_exit, st.state) == (
        "engine", True, 2, "signal 9 (SIGKILL)", "restarting")


def test_status_of_a_systemd_unit_reads_nrestarts() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=True)
    fake = FakeTransport("online1")
    _daemon_alive(fake)
    fake.on_prefix(["systemctl", "show"], stdout="NRestarts=3\nActiveState=active\n"
                                                 "Result=success\n")
    fake.on(["cat", HDIR + "/tcpcopy.stats"], stdout='{"state": "running", "counters": {}}')
    st = daemons.status(fake, rec)
    assert (st.supervisor, st.restarts, st.alive) == ("systemd", 3, True)


def test_wait_connected_fails_fast_when_the_supervisor_had_to_restart() -> None:
    rec = daemons.record_for(PYZ, HDIR, "demo", SPEC, systemd=False)
    fake = FakeTransport("online1")
    _supervisor_alive(fake)
    fake.on(["cat", HDIR + "/tcpcopy.stats"], exit_code=1)
    fake.on(["cat", HDIR + "/tcpcopy.pid"], exit_code=1)   # read with the stats (one batch)
    fake.on(["cat", SUP_STATE], stdout='{"restarts": 1, "last_exit": "exit 2"}')
    fake.on(["cat", SUP_STATE], stdout='{"restarts": 0}', times=2)
    fake.on_prefix(["tail"], stdout="[error] -x: bad value")
    with pytest.raises(RemoteError, match=r"exited during start-up(?s:.)*bad value"):
        daemons.wait_connected(fake, rec, timeout=30, poller=fake_poller())


def test_render_shows_restarts_and_prometheus_counts_them() -> None:
    st = daemons.summarize("tcpcopy", 41, {"counters": {"captured": 5}}, 10.0)
    st.supervisor, st.supervisor_alive, st.restarts, st.last_exit = (
        "engine", True, 2, "signal 9 (SIGKILL)")
    report = StatusReport("demo", [HostStatus("online1", "up", daemons=[st])])
    text = status_prometheus(report)
    assert 'tcpcopy_restarts{host="online1",lab="demo"} 2' in text
    console = Console(width=200, record=True)
    console.print(status_renderable(report))
    assert "2 (engine, last signal 9 (SIGKILL))" in console.export_text()


def test_status_watch_renders_until_ctrl_c(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`status --watch --interval S` renders, sleeps S, renders again; Ctrl-C ends it (exit 0)."""
    st = daemons.summarize("tcpcopy", 41, {"counters": {}}, 10.0)
    st.supervisor, st.supervisor_alive, st.restarts = "engine", True, 1
    calls: list[float] = []

    def fake_sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_ops.ops, "resolve", lambda path: SimpleNamespace(inventory=None))
    monkeypatch.setattr(cli_ops.ops_down, "status", lambda inv, parallel=32: StatusReport(
        "demo", [HostStatus("online1", "up", daemons=[st])]))
    monkeypatch.setattr(cli_ops.time, "sleep", fake_sleep)
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        main(["status", "--watch", "--interval", "0.5"])
    assert done.value.code == 0
    assert calls == [0.5, 0.5]
    assert capsys.readouterr().out.count("1 (engine)") == 2


def test_dead_man_undo_stops_a_real_supervisor_before_its_daemon(tmp_path: Path) -> None:
    """The journal's undo argvs of a supervised daemon, run by the engine's rollback against
    real processes: the supervisor ends (no restart) and so does the daemon."""
    hdir = str(tmp_path)
    rec = daemons.record_for("labctl-engine.pyz", hdir, "demo",
                             daemons.DaemonSpec("tcpcopy", (), supervise=True), systemd=False)
    child = ("import os, signal, sys, time\n"
             "with open(sys.argv[1] + '.tmp', 'w') as fh: fh.write(str(os.getpid()))\n"
             "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
             "signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))\n"
             "while True: time.sleep(0.05)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sup = subprocess.Popen(
        [sys.executable, "-m", "engine", "supervise", "--pid-file", rec.supervisor_pid_file,
         "--state-file", rec.supervisor_state_file, "--backoff-min", "0.05", "--",
         sys.executable, "-c", child, rec.pid_file, "tcpcopy", "--stats-file", rec.stats_file],
        env=env)
    try:
        deadline = time.monotonic() + 15
        while not (Path(rec.pid_file).exists() and Path(rec.supervisor_pid_file).exists()):
            assert time.monotonic() < deadline, "the supervised child did not start"
            time.sleep(0.02)
        child_pid = int(Path(rec.pid_file).read_text())
        journal = {"entries": [{"step": "daemon:tcpcopy", "status": "applied",
                                "undo": daemons.undo_argvs(rec), "probe": None}]}
        path = tmp_path / "journal.json"
        path.write_text(json.dumps(journal))
        assert roll_back(str(path)) == 1
        assert sup.wait(timeout=15) == 0                 # the supervisor ended, not restarting
        state = json.loads(Path(rec.supervisor_state_file).read_text())
        assert state["state"] == "stopped" and state["restarts"] == 0
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child_pid}").exists() and \
                Path(f"/proc/{child_pid}/stat").read_text().split()[2] != "Z":
            assert time.monotonic() < deadline, "the daemon outlived the dead-man's undo"
            time.sleep(0.02)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
