"""The persistent command runner (labctl.transport.runner): its frames, and its agent run here
as a real local process behind a channel-like adapter (no SSH; the lab tests drive it through
sshd)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from labctl.transport import LocalTransport
from labctl.transport.base import TIMEOUT_EXIT, Result
from labctl.transport.batch import batch_argv, chain_argv, run_batch, run_chain, split
from labctl.transport.runner import (
    AGENT,
    MARKER,
    SNAPSHOT,
    Runner,
    RunnerGone,
    command,
    decode,
    encode,
    request,
)


class PipeChannel:
    """The paramiko.Channel methods Runner uses, over a local process's pipes."""

    def __init__(self, shell_prefix: str = "") -> None:
        self.proc = subprocess.Popen(
            ["sh", "-c", f"{shell_prefix}exec {sys.executable} -I -S -u -c \"$AGENT\""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "AGENT": AGENT})
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.out, self.err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        self.eof_received = self.err_eof = False
        self.closed = False

    def fileno(self) -> int:
        return self.out

    @staticmethod
    def _ready(fd: int) -> bool:
        return bool(select.select([fd], [], [], 0)[0])

    def recv_ready(self) -> bool:
        return not self.eof_received and self._ready(self.out)

    def recv(self, n: int) -> bytes:
        data = os.read(self.out, n)
        self.eof_received = not data
        return data

    def recv_stderr_ready(self) -> bool:
        return not self.err_eof and self._ready(self.err)

    def recv_stderr(self, n: int) -> bytes:
        data = os.read(self.err, n)
        self.err_eof = not data
        return data

    def sendall(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def runner() -> Any:
    channel = PipeChannel()
    r = Runner.over(channel, probe_after=10.0, alive=lambda: True)
    try:
        yield r
    finally:
        r.close()


def call(r: Runner, argv: list[str], stdin: Optional[str] = None,
         timeout: float = 10.0) -> tuple[Optional[int], str, str]:
    r.send(argv, stdin, timeout)
    return r.receive(timeout, lambda: True)


# ---------------------------------------------------------------------------- frames (pure)

def test_frames_round_trip_and_wait_for_the_whole_body() -> None:
    frame = encode({"argv": ["echo", "é\n"], "stdin": None})
    buf = bytearray(frame[:5])
    assert decode(buf) is None and bytes(buf) == frame[:5]    # not all there: untouched
    buf += frame[5:] + encode({"x": 1})
    assert decode(buf) == {"argv": ["echo", "é\n"], "stdin": None}
    assert decode(buf) == {"x": 1} and buf == bytearray()


@pytest.mark.parametrize("junk", [b"x" * 30, b"12x\n{}", b"2\n[]"])
def test_a_frame_that_is_no_frame_is_an_error(junk: bytes) -> None:
    with pytest.raises(ValueError):
        decode(bytearray(junk))


def test_the_agent_can_be_quoted_for_the_login_shell() -> None:
    assert "'" not in AGENT and command().startswith(SNAPSHOT + "exec python3 -I -S -u -c '")
    compile(AGENT, "agent", "exec")


# ---------------------------------------------------------------------------- the agent

def test_commands_run_like_an_exec_request(runner: Runner) -> None:
    assert isinstance(runner.pid, int) and runner.python == sys.executable
    assert call(runner, ["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    assert call(runner, ["cat"], stdin="line one\nline two\n") == (0, "line one\nline two\n", "")
    assert call(runner, ["cat"]) == (0, "", "")                       # stdin at EOF, no hang
    assert call(runner, ["sh", "-c", "kill -9 $$"])[0] == 137         # 128 + SIGKILL
    code, _, err = call(runner, ["/nonexistent/labctl-x"])
    assert code == 127 and "/nonexistent/labctl-x" in err
    assert call(runner, ["printf", "\\377ok"]) == (0, "\ufffdok", "")   # not UTF-8: replaced
    big = call(runner, ["head", "-c", "3000000", "/dev/zero"])
    assert big[0] == 0 and len(big[1]) == 3_000_000


def test_a_timeout_kills_the_commands_whole_session_and_the_runner_goes_on(
        runner: Runner) -> None:
    start = time.monotonic()
    code, _, _ = call(runner, ["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert code is None and time.monotonic() - start < 5     # the background sleep too
    assert call(runner, ["echo", "next"]) == (0, "next\n", "")


def test_a_bad_request_is_answered_and_the_runner_goes_on(runner: Runner) -> None:
    runner.channel.sendall(encode({"no argv": True}))
    code, _, err = runner.receive(5, lambda: True)
    assert code == 125 and "labctl runner" in err
    assert call(runner, ["echo", "ok"]) == (0, "ok\n", "")


def test_what_a_chatty_login_shell_prints_before_the_hello_is_skipped() -> None:
    chatter = "echo 'Welcome!'; printf '12\\n'; echo 'to stderr' >&2; "
    r = Runner.over(PipeChannel(chatter), probe_after=10.0, alive=lambda: True)
    try:
        assert call(r, ["echo", "hi"]) == (0, "hi\n", "")
    finally:
        r.close()


def test_commands_get_the_login_shells_environment_not_pythons() -> None:
    """What happens between the shell's snapshot and the agent (a pyenv shim prepending to
    PATH, exporting PYENV_VERSION; python's own LC_CTYPE) does not reach the commands."""
    wrapper = (f"{SNAPSHOT}export LABCTL_TEST_ADDED=1 PATH=/labctl-none:$PATH; ")
    r = Runner.over(PipeChannel(wrapper), probe_after=10.0, alive=lambda: True)
    try:
        code, out, _ = call(r, ["sh", "-c", "echo ${LABCTL_TEST_ADDED-unset} $PATH"])
        assert (code, out) == (0, f"unset {os.environ['PATH']}\n")
        assert "\nLABCTL_RUNNER_" not in "\n" + call(r, ["env"])[1]
    finally:
        r.close()


def test_a_request_carries_a_batch_as_its_argvs_and_python3_as_the_runners() -> None:
    py = "/opt/py/bin/python3.11"
    argvs = [("python3", "--version"), ("echo", "python3"), ("sudo", "-n", "--", "python3"),
             ("python3x", "-c", "pass")]
    assert request(["python3", "-c", "python3"], None, 5, py) == {
        "argv": [py, "-c", "python3"], "stdin": None, "timeout": 5}
    assert request(["python3"], "in", 5)["argv"] == ["python3"]          # interpreter unknown
    assert request(batch_argv(argvs, "T"), None, 5, py) == {
        "batch": [[py, "--version"], ["echo", "python3"], ["sudo", "-n", "--", "python3"],
                  ["python3x", "-c", "pass"]], "token": "T", "stdin": None, "timeout": 5}
    chain = request(chain_argv(argvs[:2], "T", 1), "text", 5, py)
    assert chain["chain"] is True and chain["stdin_at"] == 1 and chain["stdin"] == "text"
    assert chain["batch"] == [[py, "--version"], ["echo", "python3"]]


class ByRunner:
    """A Transport that runs every argv through a local runner (batches as the runner's)."""

    def __init__(self, r: Runner) -> None:
        self.host, self.r = "local", r

    def wants_sudo(self, sudo: bool) -> bool:
        return False

    def run(self, argv: list[str], *, sudo: bool = True, timeout: Optional[float] = None,
            stdin: Optional[str] = None) -> Result:
        code, out, err = call(self.r, argv, stdin, 10.0 if timeout is None else timeout)
        return Result("local", tuple(argv), TIMEOUT_EXIT if code is None else code, out, err)


def test_a_batch_through_the_runner_gives_what_its_sh_script_gives(
        runner: Runner, tmp_path: Path) -> None:
    """The same Results, byte for byte, as the batch's sh script run by a shell: output,
    stderr, exit codes (127 missing tool, 128+N signal), `cat` of files read in-process with
    cat's own errors, arguments never expanded; a chain stops at the first failure and feeds
    its stdin to one argv."""
    (tmp_path / "a").write_bytes(b"first\n")
    argvs = [("echo", "hi there"), ("sh", "-c", "printf x; echo oops >&2; exit 3"),
             ("labctl-no-such-tool",), ("printf", "%s", 'a b $(x) "q" `y` ;'),
             ("cat", str(tmp_path / "a"), str(tmp_path / "missing"), str(tmp_path / "a")),
             ("cat", str(tmp_path)), ("sh", "-c", "kill -9 $$"), ("cat",), ("printf", "two\n\n")]
    by_sh = run_batch(LocalTransport("local"), argvs)
    by_runner = run_batch(ByRunner(runner), argvs)        # type: ignore[arg-type]
    assert by_sh is not None and by_runner is not None
    # a missing tool (2) and a signal (6): the same codes; the shell's words are its own
    assert "labctl-no-such-tool" in by_runner[2].stderr and by_sh[6].stderr == "Killed\n"
    same = [0, 1, 3, 4, 5, 7, 8]
    assert [by_runner[i] for i in same] == [by_sh[i] for i in same]
    assert [r.exit_code for r in by_sh] == [0, 3, 127, 0, 1, 1, 137, 0, 0]
    assert [r.exit_code for r in by_runner] == [0, 3, 127, 0, 1, 1, 137, 0, 0]
    assert by_runner[4].stderr == f"cat: {tmp_path / 'missing'}: No such file or directory\n"
    chain = [("cat",), ("sh", "-c", "cat >&2; exit 4"), ("touch", str(tmp_path / "never"))]
    want = run_chain(LocalTransport("local"), chain, stdin="the text\n", stdin_at=1)
    got = run_chain(ByRunner(runner), chain, stdin="the text\n", stdin_at=1)  # type: ignore
    assert want is not None and got == want and len(got) == 2
    assert got[1].stderr == "the text\n" and not (tmp_path / "never").exists()


def test_a_batch_cut_by_its_timeout_answers_what_ran_and_the_runner_goes_on(
        runner: Runner) -> None:
    argvs = [["echo", "done"], ["sh", "-c", "echo started; sleep 30"], ["echo", "never"]]
    code, out, _ = call(runner, chain_argv(argvs, "T", -1), timeout=1.0)
    assert code is None
    got = split(Result("h", (), TIMEOUT_EXIT, out, "labctl: timed out"), argvs, "T",
                prefix=True)
    assert got is not None and [r.exit_code for r in got] == [0, TIMEOUT_EXIT]
    assert got[0].stdout == "done\n" and "never" not in out
    assert call(runner, ["echo", "next"]) == (0, "next\n", "")


def test_no_python_no_runner() -> None:
    channel = PipeChannel("exit 127; ")
    with pytest.raises(RunnerGone):
        Runner.over(channel, probe_after=10.0, alive=lambda: True)
    assert MARKER.strip() == b"LABCTL-RUNNER"
