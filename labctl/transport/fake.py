"""FakeTransport: scripted answers, a record of every call, and a loud failure on anything else.

Unit tests use it so that no test can ever run a real command by accident:

    fake = FakeTransport("target")
    fake.on(["sysctl", "-n", "net.ipv4.ip_forward"], stdout="0\\n")
    fake.on_prefix(["ip", "-j", "route"], stdout="[]")
    fake.on_regex(r"^iptables -t raw -C ", exit_code=1)
    fake.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == "0\\n"
    fake.commands == [("sysctl", "-n", "net.ipv4.ip_forward")]

A batch (labctl.transport.batch) is answered argv by argv from the same rules, and the calls
record the argvs inside it, not the wrapper; a chain likewise, up to its first failure.
`FakeTransport(sudo_user=True)` plays a non-root
`sudo: true` host: `wants_sudo(True)` is true, and an argv run as `sudo -n -- ARGV` (inside a
batch) is answered and recorded as ARGV with `sudo=True`. A file write
(labctl.transport.textfile) that no rule answers stores its stdin in `files` under the final
path, as the host would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from labctl.transport.base import CallLog, Result
from labctl.transport.batch import SUDO_PREFIX, frame, unbatch_argv, unchain_argv
from labctl.transport.textfile import unwrite_argv

Answer = Union[Result, Callable[[tuple[str, ...]], Result]]


class UnscriptedCommand(AssertionError):
    """A test ran a command nobody scripted. Deliberately NOT a LabctlError: nothing catches it."""


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    sudo: bool = False
    stdin: Optional[str] = None
    timeout: Optional[float] = None


@dataclass
class _Rule:
    kind: str  # "exact" | "prefix" | "regex"
    key: Union[tuple[str, ...], re.Pattern[str]]
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    raises: Optional[BaseException] = None
    handler: Optional[Callable[[tuple[str, ...]], Result]] = None
    times: Optional[int] = None  # None: forever

    def matches(self, argv: tuple[str, ...]) -> bool:
        if self.times == 0:
            return False
        if self.kind == "exact":
            return argv == self.key
        if self.kind == "prefix":
            assert isinstance(self.key, tuple)
            return argv[: len(self.key)] == self.key
        assert isinstance(self.key, re.Pattern)
        return self.key.search(" ".join(argv)) is not None


@dataclass
class FakeTransport:
    """A `Transport` for tests. Later rules win over earlier ones of the same kind;
    exact rules are tried before prefix rules, prefix before regex."""

    host: str = "fake"
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    log: CallLog = field(default_factory=CallLog)
    closed: bool = False
    connected: bool = False
    sudo_user: bool = False
    _rules: list[_Rule] = field(default_factory=list)

    # -- scripting -----------------------------------------------------------------------
    def on(self, argv: Sequence[str], stdout: str = "", stderr: str = "", exit_code: int = 0,
           *, raises: Optional[BaseException] = None, times: Optional[int] = None,
           handler: Optional[Callable[[tuple[str, ...]], Result]] = None) -> FakeTransport:
        return self._add("exact", tuple(argv), stdout, stderr, exit_code, raises, times, handler)

    def on_prefix(self, argv: Sequence[str], stdout: str = "", stderr: str = "",
                  exit_code: int = 0, *, raises: Optional[BaseException] = None,
                  times: Optional[int] = None,
                  handler: Optional[Callable[[tuple[str, ...]], Result]] = None) -> FakeTransport:
        return self._add("prefix", tuple(argv), stdout, stderr, exit_code, raises, times, handler)

    def on_regex(self, pattern: str, stdout: str = "", stderr: str = "", exit_code: int = 0,
                 *, raises: Optional[BaseException] = None, times: Optional[int] = None,
                 handler: Optional[Callable[[tuple[str, ...]], Result]] = None) -> FakeTransport:
        """`pattern` is searched in the argv joined by single spaces."""
        return self._add("regex", re.compile(pattern), stdout, stderr, exit_code, raises, times,
                         handler)

    def _add(self, kind: str, key: Union[tuple[str, ...], re.Pattern[str]], stdout: str,
             stderr: str, exit_code: int, raises: Optional[BaseException], times: Optional[int],
             handler: Optional[Callable[[tuple[str, ...]], Result]]) -> FakeTransport:
        self._rules.append(_Rule(kind, key, stdout, stderr, exit_code, raises, handler, times))
        return self

    # -- Transport -----------------------------------------------------------------------
    def connect(self) -> None:
        self.connected = True

    def wants_sudo(self, sudo: bool) -> bool:
        return sudo and self.sudo_user

    def run(self, argv: Sequence[str], *, sudo: bool = True, timeout: Optional[float] = None,
            stdin: Optional[str] = None) -> Result:
        key = tuple(argv) if not isinstance(argv, str) else ()
        if not key or not all(isinstance(a, str) for a in key):
            raise TypeError(f"argv must be a non-empty sequence of str, got {argv!r}")
        batch = unbatch_argv(key)
        if batch is not None:  # as a host would: each argv in turn (recorded one by one)
            token, argvs = batch
            results = [self.run(a, sudo=sudo, timeout=timeout) for a in argvs]
            return Result(self.host, key, 0, frame(results, token))
        chain = unchain_argv(key)
        if chain is not None:  # each argv in turn until one fails; stdin to the one at `at`
            token, at, argvs = chain
            results = []
            for i, a in enumerate(argvs):
                results.append(self.run(a, sudo=sudo, timeout=timeout,
                                        stdin=stdin if i == at else None))
                if not results[-1].ok:
                    break
            return Result(self.host, key, 0, frame(results, token))
        if self.sudo_user and key[:3] == SUDO_PREFIX and len(key) > 3:
            return self.run(key[3:], sudo=True, timeout=timeout, stdin=stdin)
        self.calls.append(Call(key, sudo, stdin, timeout))
        self.log.calls.append(key)
        write = unwrite_argv(key)
        if write is not None and self._match(key) is None:  # unless scripted: the file is written
            self.files[write[1]] = (stdin or "").encode()
            return Result(self.host, key, 0)
        rule = self._find(key)
        if rule.times is not None:
            rule.times -= 1
        if rule.raises is not None:
            raise rule.raises
        if rule.handler is not None:
            return rule.handler(key)
        return Result(self.host, key, rule.exit_code, rule.stdout, rule.stderr)

    def _match(self, argv: tuple[str, ...]) -> Optional[_Rule]:
        for kind in ("exact", "prefix", "regex"):
            for rule in reversed(self._rules):
                if rule.kind == kind and rule.matches(argv):
                    return rule
        return None

    def _find(self, argv: tuple[str, ...]) -> _Rule:
        rule = self._match(argv)
        if rule is None:
            raise UnscriptedCommand(f"[{self.host}] unscripted command: {argv!r}")
        return rule

    def put(self, local_path: str, remote_path: str, mode: int = 0o644) -> None:
        self.calls.append(Call(("<put>", local_path, remote_path, oct(mode))))
        self.files[remote_path] = Path(local_path).read_bytes()

    def get(self, remote_path: str, local_path: str) -> None:
        self.calls.append(Call(("<get>", remote_path, local_path)))
        if remote_path not in self.files:
            raise UnscriptedCommand(f"[{self.host}] unscripted download: {remote_path}")
        Path(local_path).write_bytes(self.files[remote_path])

    def close(self) -> None:
        self.closed = True

    @property
    def commands(self) -> list[tuple[str, ...]]:
        """Every argv run, in order (puts and gets excluded)."""
        return [c.argv for c in self.calls if not c.argv[0].startswith("<")]
