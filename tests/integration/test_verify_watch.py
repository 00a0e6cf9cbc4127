"""`labctl verify` in the local lab while traffic runs: `--watch` in a real pseudo-terminal
(refreshes, values grow, Ctrl-C ends it with the verdict's exit code), and logs rotated
(mv + `nginx -s reopen`) mid-run, still counted exactly."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from labctl.hosts.journal import local_lab_dir
from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo
from labctl.lab.inventory import render_lab_inventory
from labctl.up import down as ops_down
from labctl.up import run as ops
from labctl.verify.fetch import MARKS_NAME
from tests.integration.conftest import unique_lab_name
from tests.integration.test_verify import CopyLab, run_cli

pytestmark = pytest.mark.integration
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ONLINE_ROW = re.compile(r"online requests\W+(\d+)")


@pytest.fixture
def copy_lab(lab_factory: Callable[..., LabInfo], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[CopyLab]:
    """A lab (named with $LABCTL_TEST_LAB_PREFIX) brought up by `labctl up`; down at the end."""
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    info = lab_factory(name=unique_lab_name())
    text = render_lab_inventory(info)
    path = tmp_path / f"{info.name}.yaml"
    path.write_text(text)
    inv = parse_inventory(text, source=str(path))
    try:
        report = ops.up(inv, ops.UpOptions(inventory_path=str(path), inventory_text=text))
        assert report.ok, report.errors
        yield CopyLab(info, inv, path)
    finally:
        ops_down.down(inv)


def start_traffic(lab: CopyLab, requests: int, rate: float) -> subprocess.Popen[str]:
    url = f"http://{lab.info.hosts['online'].address}"
    argv = [*lab.info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
            url, "--requests", str(requests), "--rate", str(rate), "--mode", "mixed",
            "--connections", "4", "--post-sizes", "0,1024", "--json"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    return dict(json.loads(out))


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def pool_copies(lab: CopyLab, files: list[Path], since: float) -> int:
    """Lines from the fake client pool logged at or after `since`, over all `files`."""
    prefix = str(lab.info.fake_pool).rsplit(".", 1)[0] + "."
    n = 0
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            if line.startswith(prefix):
                stamp = line.split("[", 1)[1].split("]", 1)[0]
                n += datetime.fromisoformat(stamp).timestamp() >= int(since)
    return n


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def wait_stable(count: Callable[[], int], want: int, timeout: float = 60) -> int:
    """Until `count()` reaches `want`, or stops growing for 5 s."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        got = count()
        if got >= want:
            return got
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > 5:
            return got
        time.sleep(0.25)
    return count()


class PtyReader:
    """Everything the child writes to its pseudo-terminal, collected by a thread."""

    def __init__(self, fd: int) -> None:
        self.fd, self.lock = fd, threading.Lock()
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO once the child closed its side
                return
            if not data:
                return
            with self.lock:
                self.chunks.append(data)

    def text(self) -> str:
        with self.lock:
            raw = b"".join(self.chunks)
        return ANSI.sub("", raw.decode(errors="replace"))

    def frames(self) -> list[int]:
        """The online-requests figure of every table drawn so far."""
        return [int(v) for v in ONLINE_ROW.findall(self.text())]


def test_watch_refreshes_live_and_ctrl_c_exits_with_the_verdict(copy_lab: CopyLab) -> None:
    lab = copy_lab
    traffic = start_traffic(lab, requests=1500, rate=100)  # ~15 s
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 120, 220, 0, 0))
    argv = [sys.executable, "-c", "import sys; from labctl.cli import main; main(sys.argv[1:])",
            "verify", str(lab.path), "--since-up", "--watch", "--interval", "1"]
    watch = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=subprocess.PIPE, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    reader = PtyReader(master)
    try:
        # at least two refreshes after the first table, with the figures growing in between
        wait_for(lambda: len(reader.frames()) >= 3 and reader.frames()[-1] > reader.frames()[0],
                 60, "three tables with a growing online count")
        truth = finish(traffic)
        sent = int(truth["sent"])
        log = lab.info.hosts["target"].access_log
        assert log is not None
        wait_stable(lambda: pool_copies(lab, [log], 0), sent)
        drawn = len(reader.frames())
        wait_for(lambda: len(reader.frames()) >= drawn + 2 and reader.frames()[-1] == sent,
                 60, f"tables after the copies drained (online {sent})")
        assert watch.poll() is None  # still watching
        os.kill(watch.pid, signal.SIGINT)
        code = watch.wait(timeout=60)
        err = watch.stderr.read().decode() if watch.stderr else ""
    finally:
        stop(traffic)
        stop(watch)
        reader.thread.join(timeout=10)
        os.close(master)
    frames = reader.frames()
    assert frames == sorted(frames) and frames[-1] == sent, frames
    last_verdict = "PASS" if "PASS" in reader.text().rsplit("online requests", 1)[1] else "FAIL"
    assert f"last verdict {last_verdict}" in err, err
    assert "Traceback" not in err and "interrupted" not in err
    assert code == (0 if last_verdict == "PASS" else 3), (code, err)
    assert last_verdict == "PASS", reader.text()[-3000:]  # every copy was in by then


def test_since_up_counts_exactly_across_a_log_rotation(
        copy_lab: CopyLab, capsys: pytest.CaptureFixture[str]) -> None:
    lab = copy_lab
    hosts = {role: lab.info.hosts[role] for role in ("online", "target")}
    logs = {role: h.access_log for role, h in hosts.items()}
    assert all(p is not None for p in logs.values())
    started = time.time()
    traffic = start_traffic(lab, requests=2000, rate=200)  # ~10 s
    try:
        target_log = logs["target"]
        assert target_log is not None
        wait_for(lambda: pool_copies(lab, [target_log], started) >= 500, 60,
                 "500 copies before rotating")
        for role, host in hosts.items():  # what logrotate does: mv, then tell nginx to reopen
            log = logs[role]
            assert log is not None and host.error_log is not None
            log.rename(log.with_name(log.name + ".1"))
            subprocess.run([*lab.info.ns_argv(role), "/usr/sbin/nginx", "-e",
                            str(host.error_log), "-p", str(host.dir), "-c",
                            str(host.dir / "nginx.conf"), "-s", "reopen"],
                           check=True, capture_output=True, timeout=30)
        wait_for(lambda: target_log.exists() and target_log.stat().st_size > 0, 30,
                 "nginx writing the reopened target log")
        truth = finish(traffic)
    finally:
        stop(traffic)
    sent = int(truth["sent"])
    both = [target_log.with_name(target_log.name + ".1"), target_log]
    copies = wait_stable(lambda: pool_copies(lab, both, started), sent)
    assert pool_copies(lab, [both[0]], started) >= 500 and pool_copies(lab, [target_log], 0)

    marks = local_lab_dir(lab.inv.lab) / MARKS_NAME
    first = "marks from up" if marks.exists() else "time since up"
    runs: list[tuple[str, Optional[Path]]] = [(first, None)]
    if marks.exists():
        runs.append(("time since up", marks))
    for how, remove in runs:
        if remove is not None:
            remove.unlink()  # force the read-by-time path
        code, out = run_cli(capsys, "verify", str(lab.path), "--since-up", "--json")
        report = json.loads(out)
        brief = (how, sent, copies, {k: report[k] for k in (
            "online_requests", "target_requests", "target_matched", "target_excess")})
        assert report["online_requests"] == sent, brief
        assert report["target_matched"] + report["target_excess"] == copies, brief
        assert report["target_requests"] == copies and report["leaks"] == 0, brief
        assert report["malformed"] == {k: 0 for k in report["malformed"]}, brief
        assert code == (0 if report["verdict"]["passed"] else 3), brief
