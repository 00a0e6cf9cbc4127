"""The copy rig: tcpcopy + intercept started directly in a local lab (shared by the copy tests).

The rig: intercept on the assistant (``-F 'tcp and src port 80'``), tcpcopy on online
(``-x 80-TARGET:80 -s ASSISTANT -c 10.79.N.x``), the route ``10.79.N.0/24 via ASSISTANT`` on
the target, everything started with ``ip netns exec`` and pidfiles, stopped by pid.
The truth is the online nginx access log; the copy is the target's.
"""

from __future__ import annotations

import collections
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Counter, Dict, List, Optional, Sequence

from labctl.lab import LabInfo

REPO = Path(__file__).resolve().parents[2]
LOG_RE = re.compile(r'^(\S+) \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d+) (\d+) (\d+) "([^"]*)"')


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def log_requests(path: Optional[Path], prefix: str = "") -> Counter[tuple]:
    """Multiset of (method, uri, content_length) in an nginx access log (optionally by client)."""
    out: Counter[tuple] = collections.Counter()
    if path is None or not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_RE.match(line)
        if m and m.group(1).startswith(prefix):
            out[(m.group(2), m.group(3), m.group(7))] += 1
    return out


def clients_of(path: Optional[Path]) -> Counter[str]:
    out: Counter[str] = collections.Counter()
    if path is not None and path.exists():
        for line in path.read_text(errors="replace").splitlines():
            out[line.split(" ", 1)[0]] += 1
    return out


class Rig:
    """Daemons and lab changes of one copy test; ``close()`` undoes everything it started."""

    def __init__(self, lab: LabInfo, workdir: Path) -> None:
        self.lab = lab
        self.dir = workdir
        self.procs: List[subprocess.Popen[bytes]] = []
        self.undo: List[List[str]] = []
        n = lab.index
        self.pool = f"10.79.{n}.0/24"
        self.fake_prefix = f"10.79.{n}."
        self.online = lab.host("online").address
        self.target = lab.host("target").address
        self.assistant = lab.host("assistant").address
        self.key = workdir / "channel.key"
        self.key.write_text(secrets.token_hex(24) + "\n")
        self.key.chmod(0o600)
        self.env = dict(os.environ, PYTHONPATH=str(REPO))

    # -- processes ------------------------------------------------------------------------
    def ns(self, role: str, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.lab.ns_argv(role), *argv], capture_output=True, text=True,
                              timeout=60, check=check)

    def spawn(self, role: str, argv: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.out", "ab")  # noqa: SIM115
        proc = subprocess.Popen([*self.lab.ns_argv(role), *argv], stdout=log, stderr=log,
                                env=self.env, cwd=str(REPO))
        log.close()
        self.procs.append(proc)
        return proc

    def engine(self, role: str, tool: str, args: Sequence[str], name: str) -> subprocess.Popen:
        stats = self.dir / f"{name}.json"
        argv = [sys.executable, "-m", "engine", tool, *args, "--key-file", str(self.key),
                "--stats-file", str(stats), "--stats-interval", "0.2",
                "-P", str(self.dir / f"{name}.pid"), "-l", str(self.dir / f"{name}.log")]
        return self.spawn(role, argv, name)

    def stats(self, name: str) -> Dict[str, Any]:
        return read_json(self.dir / f"{name}.json") or {}

    def start_intercept(self, role: str = "assistant", name: str = "intercept",
                        port: int = 80, extra: Sequence[str] = ()) -> None:
        self.engine(role, "intercept", ["-i", "eth0", "-F", f"tcp and src port {port}", *extra],
                    name)
        wait_for(lambda: self.stats(name).get("state") == "running", 20, f"{name} running")

    def start_tcpcopy(self, extra: Sequence[str] = (), fake: Optional[str] = None,
                      server: Optional[str] = None, name: str = "tcpcopy",
                      wait: bool = True, port: int = 80,
                      target_port: Optional[int] = None) -> None:
        args = ["-x", f"{port}-{self.target}:{target_port or port}", "-s", server or self.assistant,
                "-c", fake or f"{self.fake_prefix}x", *extra]
        self.engine("online", "tcpcopy", args, name)
        if wait:
            wait_for(lambda: any(i.get("connections", 0) > 0
                                 for i in self.stats(name).get("intercepts", [])),
                     20, f"{name} connected to intercept")

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> Optional[int]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def route_pool_via_assistant(self) -> None:
        self.ns("target", ["ip", "route", "add", self.pool, "via", self.assistant])
        self.undo.append(["target", "ip", "route", "del", self.pool, "via", self.assistant])

    def traffic(self, *args: str, timeout: float = 120) -> Dict[str, Any]:
        url = f"http://{self.online}"
        out = subprocess.run([*self.lab.ns_argv("client"), sys.executable, "-m",
                              "labctl.lab.traffic", "--url", url, "--json", *args],
                             capture_output=True, text=True, timeout=timeout, env=self.env,
                             cwd=str(REPO), check=True)
        return json.loads(out.stdout)

    def target_copies(self) -> Counter[tuple]:
        return log_requests(self.lab.host("target").access_log, self.fake_prefix)

    def online_truth(self) -> Counter[tuple]:
        return log_requests(self.lab.host("online").access_log)

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        for argv in self.undo:
            self.ns(argv[0], argv[1:], check=False)




def fidelity(truth: Counter[tuple], copies: Counter[tuple]) -> float:
    total = sum(truth.values())
    matched = sum(min(n, copies.get(k, 0)) for k, n in truth.items())
    return matched / total if total else 0.0


def settle(rig: Rig, want: int, timeout: float = 30, quiet: float = 4.0) -> Counter[tuple]:
    """Copies on the target once it holds ``want`` of them or stopped growing for ``quiet`` s."""
    last, since = -1, time.monotonic()
    deadline = since + timeout
    while True:
        copies = rig.target_copies()
        n = sum(copies.values())
        now = time.monotonic()
        if n != last:
            last, since = n, now
        if n >= want or now - since >= quiet or now > deadline:
            return copies
        time.sleep(0.5)
