"""The SSH transport over a real sshd in the lab: large outputs arrive whole, a cut link is
reported in seconds, uploads keep their mode, the persistent runner answers like exec."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo
from labctl.lab.inventory import render_lab_inventory
from labctl.transport import HostPool
from labctl.transport.base import TIMEOUT_EXIT
from labctl.transport.batch import run_batch
from labctl.transport.ssh import SSHTransport

pytestmark = pytest.mark.integration


def test_large_output_is_not_cut_short(lab: LabInfo, tmp_path: Path) -> None:
    inv = parse_inventory(render_lab_inventory(lab), str(tmp_path / "inventory.yaml"))
    size = 3_000_000
    with HostPool.open(inv) as pool:
        transport = pool.transport("target")
        for _ in range(3):
            result = transport.run(["head", "-c", str(size), "/dev/zero"]).check()
            assert len(result.stdout) == size


def test_link_cut_mid_command_is_reported_within_seconds(lab: LabInfo, tmp_path: Path) -> None:
    """SSH packets dropped (in the lab's own online namespace) while a long, silent command
    runs: the transport's probe finds the host gone and says so in about PROBE_AFTER +
    PROBE_TIMEOUT seconds, not at the command's 60 s timeout."""
    import subprocess
    import threading
    import time

    from labctl.transport import ssh as ssh_mod
    from labctl.transport.base import ConnectionLost

    inv = parse_inventory(render_lab_inventory(lab), str(tmp_path / "inventory.yaml"))
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]
    cut = threading.Timer(1.0, lambda: subprocess.run(
        [*lab.ns_argv("online"), "iptables", "-w", "-I", *rule], check=True))
    try:
        with HostPool.open(inv) as pool:
            transport = pool.transport("online")
            transport.run(["true"]).check()
            cut.start()
            start = time.monotonic()
            with pytest.raises(ConnectionLost) as exc:
                transport.run(["sleep", "50"])
            took = time.monotonic() - start
        assert "no answer from the host" in exc.value.message
        assert took < ssh_mod.PROBE_AFTER + ssh_mod.PROBE_TIMEOUT + 10, took
    finally:
        cut.cancel()
        subprocess.run([*lab.ns_argv("online"), "iptables", "-w", "-D", *rule], check=False,
                       capture_output=True)


def test_an_upload_is_never_readable_beyond_its_mode(lab: LabInfo, tmp_path: Path) -> None:
    """put(..., 0o600) creates the file 0600 before writing a byte (issue 13 review: the
    channel key was written with the server's default mode, then chmodded), replaces an
    existing file, and leaves no temporary file behind."""
    inv = parse_inventory(render_lab_inventory(lab), str(tmp_path / "inventory.yaml"))
    src = tmp_path / "secret"
    src.write_bytes(b"k" * 200_000)
    remote = f"{lab.dir}/target/put-test.key"
    with HostPool.open(inv) as pool:
        t = pool.transport("target")
        t.run(["sh", "-c", f"echo old > {remote}; chmod 644 {remote}"]).check()
        t.put(str(src), remote, mode=0o600)
        mode = t.run(["stat", "-c", "%a %s", remote]).check().stdout.split()
        left = t.run(["sh", "-c", f"ls {remote}.part-* 2>/dev/null | wc -l"]).check().stdout
        t.run(["rm", "-f", remote]).check()
    assert mode == ["600", "200000"] and left.strip() == "0"


COMMANDS: list[tuple[list[str], Optional[str]]] = [
    (["sh", "-c", "echo out; echo err >&2; exit 3"], None),
    (["cat"], "line one\nline two\n"),
    (["sh", "-c", "kill -9 $$"], None),
    (["sh", "-c", "env | grep -v -e '^_=' -e '^SSH_' | sort; id -u"], None),
    (["sh", "-c", "iptables-save -t filter | grep -v '^#'"], None),
]


def test_the_persistent_runner_answers_like_exec_requests(lab: LabInfo, tmp_path: Path) -> None:
    """Through the real sshd: every command of a connection goes to one runner (the login
    shell started once), with the exit codes, output, environment and stdin an exec request
    gives; a runner killed on the host is replaced, the command that found it gone answered
    by an exec request; `ssh.persistent_runner: false` uses exec requests only."""
    text = render_lab_inventory(lab)
    inv = parse_inventory(text, str(tmp_path / "inventory.yaml"))
    off = parse_inventory(text.replace("config: false}", "config: false, "
                                       "persistent_runner: false}"),
                          str(tmp_path / "inventory-off.yaml"))
    assert not off.ssh.persistent_runner and inv.ssh.persistent_runner
    with HostPool.open(inv) as pool, HostPool.open(off) as plain:
        t, e = pool.transport("target"), plain.transport("target")
        assert isinstance(t, SSHTransport) and isinstance(e, SSHTransport)
        by_runner = [t.run(argv, stdin=stdin) for argv, stdin in COMMANDS]
        by_exec = [e.run(argv, stdin=stdin) for argv, stdin in COMMANDS]
        # killed by a signal: the runner says 128 + N as a shell would, paramiko's exec -1
        assert by_runner[2].exit_code == 137 and by_exec[2].exit_code == -1
        assert by_runner[:2] + by_runner[3:] == by_exec[:2] + by_exec[3:]
        assert [r.exit_code for r in by_runner][:2] == [3, 0]
        assert t._runner is not None and e._runner is None
        pid = t._runner.pid
        # python3 is the runner's own interpreter (no wrapper started again), in a batch too
        exe = ["python3", "-c", "import sys; print(sys.executable)"]
        assert t._runner.python and t.run(exe).check().stdout == t._runner.python + "\n"
        batch = run_batch(t, [exe, ["echo", "python3"]])
        assert batch is not None and [r.stdout for r in batch] == [t._runner.python + "\n",
                                                                   "python3\n"]
        for _ in range(20):
            t.run(["true"]).check()
        assert t._runner is not None and t._runner.pid == pid       # one runner throughout
        gone = t.run(["kill", "-9", str(pid)])     # the runner kills itself mid-answer
        assert gone.exit_code == TIMEOUT_EXIT and "runner stopped answering" in gone.stderr
        assert t.run(["echo", "again"]).check().stdout == "again\n"   # by exec, then a new one
        assert t.run(["echo", "again"]).check().stdout == "again\n"
        assert t._runner is not None and t._runner.pid != pid
