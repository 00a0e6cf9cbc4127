"""The persistent command runner: one long-lived `python3` process per host connection that
runs labctl's commands, so a host pays its login shell's start once per run, not once per
command.

Every SSH exec request goes through the login shell (`$SHELL -c`), and Debian's bash sources
`~/.bashrc` for it; a `.bashrc` that initialises pyenv, conda or nvm costs 100-200 ms of CPU
per command. On the lab box (root's `.bashrc` runs `pyenv init`) that was 42 of the 60
CPU-seconds of an 18-host `up` (BENCHMARKS.md). The runner is started with one exec request
(`python3 -I -S -u -c AGENT`: the shell's start is paid there; `-I -S`: no site-packages,
no PYTHON* variables, for the runner itself only), then reads framed requests on its
stdin and answers on its stdout (after a marker line, so whatever a chatty `.bashrc` printed
before it is skipped):

    request:  b"<length>\\n" + JSON {"argv": [...], "stdin": str | null, "timeout": seconds}
    answer:   b"<length>\\n" + JSON {"code": int | null, "out": str, "err": str}

It runs argv without a shell (argv is a list end to end, as elsewhere), its stdin the given
text then EOF, in a session of its own; on the timeout it kills that session and answers
`code: null`. Exit codes read as a shell reports them: 127 not found, 126 not executable,
128+N killed by signal N. The first frame it writes is a hello (`{"runner": VERSION}`); a host
whose runner does not say hello (no python3) falls back to one exec request per command.

The environment of the commands is that of the login shell that started the runner, as for an
exec request: the shell hands over its variable names and PATH before python3 starts, so
what a wrapper (a pyenv shim) or python3 itself (PEP 538's LC_CTYPE) adds is left out.
A batch or chain of labctl.transport.batch goes as its argvs (`{"batch": [...], "token": ...,
"chain": bool, "stdin_at": k}`): the runner runs them one by one and answers the very frames
the batch's sh script prints, without that sh and its `mktemp`, `rm` and `cat`s (`cat FILE...`
is read in-process, with cat's errors): a status poll of a daemon is one read of three files,
not six processes. The hello also names the interpreter the runner is (`sys.executable`: the
`python3` the login shell's PATH finds, past any wrapper), and every argv sent that starts
with `python3` (alone or in a batch) starts with that path instead (`request`): the same
interpreter, without a wrapper's start each time (a pyenv shim costs ~65 ms of CPU per
`python3`; an 18-host `up` starts ~70 of them: `detach`, the dead-man timer, facts, TCP
probes). Nothing is written on the host; the runner ends with its channel.
"""

from __future__ import annotations

import json
import select
import time
from typing import Any, Callable, Optional, Sequence

import paramiko

from labctl.transport.batch import unbatch_argv, unchain_argv

VERSION = 1
#: How long the runner may take to say hello (its login shell and python3 starting).
START_TIMEOUT = 20.0
#: Seconds the client waits beyond a command's own timeout for the runner's answer.
GRACE = 5.0

# Python 3.5+ and PyPy, stdlib only: it runs on the host's python3, whatever its version.
AGENT = r"""
import json, os, signal, subprocess, sys, time
i, o = sys.stdin.buffer, sys.stdout.buffer
# the environment of the login shell: what a wrapper of python3 (a pyenv shim) or python3
# itself (LC_CTYPE, PEP 538) added since is not for the commands
ENV = dict(os.environ)
NAMES = ENV.pop("LABCTL_RUNNER_NAMES", None)
PATH = ENV.pop("LABCTL_RUNNER_PATH", None)
if NAMES is not None:
    ENV = dict((k, v) for k, v in ENV.items() if k in set(NAMES.split("\n")))
if PATH is not None:
    ENV["PATH"] = PATH
def send(doc):
    body = json.dumps(doc).encode()
    o.write(str(len(body)).encode() + b"\n" + body)
    o.flush()
def cat(paths):
    # `cat FILE...` without a process: its output, and its errors as cat words them
    out, err, code = [], [], 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                out.append(f.read())
        except OSError as exc:
            err.append(("cat: %s: %s\n" % (path, exc.strerror)).encode())
            code = 1
    return code, b"".join(out), b"".join(err)
def one(argv, data, timeout):
    if argv[0] == "cat" and len(argv) > 1 and all(a[:1] not in ("-", "") for a in argv[1:]):
        return cat(argv[1:])
    try:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True, env=ENV)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        return code, b"", ("%s: %s\n" % (argv[0], exc.strerror)).encode()
    try:
        out, err = p.communicate(data, timeout=timeout)
        code = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = b"", b""
        code = None
    if code is not None and code < 0:
        code = 128 - code
    return code, out, err
def text(data):
    return data.decode("utf-8", "replace")
def batch(req):
    # a batch of labctl (or a chain: it stops after the first failure), in the frames the sh
    # script of labctl.transport.batch prints, without that sh, its mktemp and rm
    tok, at, chain = req["token"], req.get("stdin_at", -1), req.get("chain")
    data, limit = (req.get("stdin") or "").encode(), req.get("timeout")
    end = None if limit is None else time.monotonic() + limit
    parts = []
    for k, argv in enumerate(req["batch"]):
        parts.append(("%s out\n" % tok).encode())
        left = None if end is None else max(0.0, end - time.monotonic())
        code, out, err = one(argv, data if k == at else b"", left)
        parts.append(out)
        if code is None:
            return {"code": None, "out": text(b"".join(parts)), "err": ""}
        parts.append(("\n%s err %d\n" % (tok, code)).encode())
        parts.append(err)
        parts.append(("\n%s end\n" % tok).encode())
        if chain and code != 0:
            break
    return {"code": 0, "out": text(b"".join(parts)), "err": ""}
def run(req):
    if "batch" in req:
        return batch(req)
    code, out, err = one(req["argv"], (req.get("stdin") or "").encode(), req.get("timeout"))
    return {"code": code, "out": text(out), "err": text(err)}
o.write(b"\n@MARKER@\n")
send({"runner": @VERSION@, "pid": os.getpid(), "python": sys.executable})
while True:
    line = i.readline()
    if not line:
        break
    try:
        req = json.loads(i.read(int(line)).decode("utf-8"))
        answer = run(req)
    except Exception as exc:
        answer = {"code": 125, "out": "", "err": "labctl runner: %r\n" % (exc,)}
    send(answer)
""".replace("@VERSION@", str(VERSION)).replace("@MARKER@", "LABCTL-RUNNER")
#: Written before the hello: what a chatty login shell printed before it is skipped.
MARKER = b"\nLABCTL-RUNNER\n"


#: The login shell's variable names and PATH, taken before python3 (or its wrapper) starts.
SNAPSHOT = ("LABCTL_RUNNER_NAMES=\"$(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p')\"; "
            "LABCTL_RUNNER_PATH=\"$PATH\"; export LABCTL_RUNNER_NAMES LABCTL_RUNNER_PATH; ")


#: The program the runner is started as (found on the login shell's PATH).
PYTHON = "python3"


def command(python: str = PYTHON) -> str:
    """The exec request that starts the runner (the agent has no single quote: asserted)."""
    assert "'" not in AGENT
    return f"{SNAPSHOT}exec {python} -I -S -u -c '{AGENT}'"


def request(argv: Sequence[str], stdin: Optional[str], limit: float,
            python: Optional[str] = None) -> dict[str, Any]:
    """The request for `argv` (pure): a batch or chain of labctl.transport.batch as its argvs
    (the runner runs them one by one and prints the script's frames: no `sh`, `mktemp`, `rm`,
    `cat` of plain files in-process), any other argv as it is; with `python` (the runner's
    interpreter), every argv that starts with `python3` starts with that path instead."""
    def own(words: Sequence[str]) -> list[str]:
        return [python, *words[1:]] if python and list(words[:1]) == [PYTHON] else list(words)
    doc: dict[str, Any] = {"stdin": stdin, "timeout": limit}
    chain = unchain_argv(argv)
    if chain is not None:
        token, at, argvs = chain
        doc.update(chain=True, stdin_at=at)
    else:
        batch = unbatch_argv(argv)
        if batch is None:
            return {"argv": own(argv), **doc}
        token, argvs = batch
    return {"batch": [own(a) for a in argvs], "token": token, **doc}


class RunnerGone(Exception):
    """The runner stopped answering or its channel closed (the caller decides whether the
    connection is lost or only the runner)."""


def encode(doc: dict[str, Any]) -> bytes:
    """One frame: the body's length in decimal, a newline, the JSON body (pure)."""
    body = json.dumps(doc).encode()
    return str(len(body)).encode() + b"\n" + body


def decode(buffer: bytearray) -> Optional[dict[str, Any]]:
    """The first complete frame in `buffer` (removed from it), or None when it is not all
    there yet; ValueError on a frame that is no frame (pure)."""
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > 20:
            raise ValueError(f"no frame length in {bytes(buffer[:40])!r}")
        return None
    size = int(buffer[:end])
    if len(buffer) < end + 1 + size:
        return None
    body = bytes(buffer[end + 1:end + 1 + size])
    del buffer[:end + 1 + size]
    doc = json.loads(body.decode())
    if not isinstance(doc, dict):
        raise ValueError("a frame that is not an object")
    return doc


class Runner:
    """The client of one host's runner, on its own session channel of the connection."""

    def __init__(self, channel: Any, probe_after: float) -> None:
        self.channel = channel
        self.probe_after = probe_after
        self.buffer = bytearray()
        self.pid: Optional[int] = None
        #: The interpreter the runner is (its `sys.executable`, from the hello); None: unknown.
        self.python: Optional[str] = None
        self.skip_to_marker = False

    @classmethod
    def start(cls, transport: paramiko.Transport, probe_after: float,
              alive: Callable[[], bool]) -> Runner:
        """Open a session channel, start the runner on it and wait for its hello;
        RunnerGone when none comes."""
        channel = transport.open_session()
        channel.exec_command(command())
        return cls.over(channel, probe_after, alive)

    @classmethod
    def over(cls, channel: Any, probe_after: float, alive: Callable[[], bool]) -> Runner:
        """The runner started on `channel` (paramiko's, or anything with its methods), once
        it said hello; RunnerGone (channel closed) when it does not."""
        runner = cls(channel, probe_after)
        runner.skip_to_marker = True
        hello = runner._receive(START_TIMEOUT, alive)
        if hello is None or hello.get("runner") != VERSION:
            runner.close()
            raise RunnerGone(f"no runner hello: {hello!r}")
        runner.pid = hello.get("pid")
        python = hello.get("python")
        runner.python = python if isinstance(python, str) and python.startswith("/") else None
        return runner

    def send(self, argv: Sequence[str], stdin: Optional[str], limit: float) -> None:
        """Ask the runner to run argv (its stdin `stdin` then EOF, killed after `limit` s;
        a batch or chain as its argvs, `python3` as the runner's own: `request`)."""
        self.channel.sendall(encode(request(argv, stdin, limit, self.python)))

    def receive(self, limit: float, alive: Callable[[], bool]
                ) -> tuple[Optional[int], str, str]:
        """The answer to `send`: (exit code or None on timeout, stdout, stderr)."""
        answer = self._receive(limit + GRACE, alive)
        if answer is None:
            raise RunnerGone(f"no answer within {limit + GRACE:g} s")
        code = answer.get("code")
        return (None if code is None else int(code), str(answer.get("out", "")),
                str(answer.get("err", "")))

    def _receive(self, limit: float, alive: Callable[[], bool]) -> Optional[dict[str, Any]]:
        """The next frame, or None after `limit` s; RunnerGone when the channel closes;
        EOFError when `alive()` says the connection is gone (asked after `probe_after` s of
        silence, as for an exec request)."""
        start = time.monotonic()
        heard = start
        while True:
            if self.skip_to_marker:
                at = self.buffer.find(MARKER)
                if at >= 0:
                    del self.buffer[:at + len(MARKER)]
                    self.skip_to_marker = False
                elif len(self.buffer) > 1 << 20:
                    raise RunnerGone("no runner marker in the first MiB of output")
            try:
                doc = None if self.skip_to_marker else decode(self.buffer)
            except ValueError as exc:
                raise RunnerGone(str(exc)) from None
            if doc is not None:
                return doc
            while self.channel.recv_stderr_ready():   # the login shell's chatter: dropped
                self.channel.recv_stderr(65536)
            if self.channel.recv_ready():
                chunk = self.channel.recv(65536)
                if chunk:
                    self.buffer += chunk
                    heard = time.monotonic()
                    continue
            if self.channel.eof_received or self.channel.closed:
                raise RunnerGone("the runner's channel closed")
            now = time.monotonic()
            if now - start >= limit:
                return None
            if now - heard >= self.probe_after:
                if not alive():
                    raise EOFError(f"no answer from the host for {now - start:.0f} s")
                heard = time.monotonic()
            select.select([self.channel], [], [], min(0.1, max(0.0, limit - (now - start))))

    def close(self) -> None:
        self.channel.close()
