"""`labctl verify` in the local lab, through `labctl up`, real sshd, nginx and the engine.

The truth is what the test itself knows: the client's own count of requests it sent, and the
copies the target logged (counted here by reading the log file directly).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from labctl.cli import main
from labctl.hosts import daemons
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.lab import LabInfo, services
from labctl.lab.inventory import render_lab_inventory
from labctl.up import down as ops_down
from labctl.up import run as ops
from tests.integration.conftest import unique_lab_name
from tests.integration.copyrig import wait_for

pytestmark = pytest.mark.integration


@dataclass
class CopyLab:
    info: LabInfo
    inv: Inventory
    path: Path

    def ns(self, role: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.info.ns_argv(role), *argv], capture_output=True,
                              text=True, timeout=120, check=check)

    def traffic(self, requests: int, mode: str = "mixed", connections: int = 4,
                rate: float = 1000, get_paths: str = "/") -> dict[str, Any]:
        url = f"http://{self.info.hosts['online'].address}"
        argv = [*self.info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic",
                "--url", url, "--requests", str(requests), "--mode", mode, "--connections",
                str(connections), "--rate", str(rate), "--post-sizes", "0,1024,65536",
                "--get-paths", get_paths, "--json"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        return dict(json.loads(proc.stdout))

    def target_copies(self, since: float = 0.0,
                      sent: Optional[dict[str, Any]] = None) -> int:
        """Copies in the target's access log (from the fake pool, logged at or after `since`),
        counted by the test itself; with `sent` (the client's summary) only faithful copies:
        a method, URI and body length the client really sent."""
        from datetime import datetime

        log = self.info.hosts["target"].access_log
        assert log is not None
        prefix = str(self.info.fake_pool).rsplit(".", 1)[0] + "."
        wanted = {(r["method"], r["uri"], int(r["body_len"])) for r in sent["by_request"]} \
            if sent else None
        n = 0
        for line in log.read_text().splitlines():
            if not line.startswith(prefix):
                continue
            stamp = line.split("[", 1)[1].split("]", 1)[0]
            if datetime.fromisoformat(stamp).timestamp() < int(since):
                continue
            request, rest = line.split('"', 2)[1], line.split('"', 2)[2]
            words = request.split(" ")
            cl = rest.split('"')[1]
            key = (words[0], words[1] if len(words) > 1 else "", int(cl) if cl.isdigit() else 0)
            n += wanted is None or key in wanted
        return n

    def wait_copies(self, want: int, timeout: float = 60.0) -> int:
        """Until the target logged `want` copies, or its count stopped growing for 5 s."""
        deadline, last, still = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            got = self.target_copies()
            if got >= want:
                return got
            if got != last:
                last, still = got, time.monotonic()
            elif time.monotonic() - still > 5:
                return got
            time.sleep(0.25)
        return self.target_copies()


def _brief(report: dict[str, Any]) -> str:
    keys = ("online_requests", "target_requests", "target_matched", "target_excess",
            "copy_ratio", "expected_ratio", "verdict", "notes", "attribution")
    out = {k: report[k] for k in keys}
    out["daemons"] = [(d["host"], d["tool"], d["state"], d["counters"]) for d in report["daemons"]]
    return json.dumps(out, indent=1)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().out


@pytest.fixture
def copy_lab_factory(lab_factory: Callable[..., LabInfo], tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., CopyLab]]:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    made: list[CopyLab] = []

    def make(sample: int = 100, multiplier: int = 1, topology: str = "three-server") -> CopyLab:
        info = lab_factory(name=unique_lab_name())
        text = render_lab_inventory(info, topology=topology)
        text = text.replace("sample_percent: 100", f"sample_percent: {sample}")
        text = text.replace("multiplier: 1,", f"multiplier: {multiplier},")
        path = tmp_path / f"{info.name}.yaml"
        path.write_text(text)
        inv = parse_inventory(text, source=str(path))
        report = ops.up(inv, ops.UpOptions(inventory_path=str(path), inventory_text=text))
        assert report.ok, report.errors
        lab = CopyLab(info, inv, path)
        made.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in made:
            ops_down.down(lab.inv)


def test_verify_pass_10000_requests(copy_lab_factory: Callable[..., CopyLab],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    lab = copy_lab_factory()
    started = time.time()
    truth = lab.traffic(10000)
    sent = int(truth["sent"])
    assert sent >= 9990, truth
    lab.wait_copies(sent)
    copies = lab.target_copies(since=started, sent=truth)
    code, out = run_cli(capsys, "verify", str(lab.path), "--since-up", "--json")
    report = json.loads(out)
    true_ratio = copies / sent
    assert report["online_requests"] == sent
    # `up` recorded where the logs ended and the conntrack counts: verify read from there
    from labctl.verify.fetch import load_marks

    marks = load_marks(lab.inv.lab)
    assert marks is not None and len(marks.logs) == 2
    assert {c["host"] for c in report["conntrack"]} == {"online", "target"}
    assert all(c["count_at_up"] is not None for c in report["conntrack"]), report["conntrack"]
    assert abs(report["copy_ratio"] - true_ratio) <= 0.001, (report["copy_ratio"], true_ratio)
    assert report["verdict"]["passed"], report["verdict"]
    assert code == 0


def test_verify_injected_loss_fails_and_is_attributed(
        copy_lab_factory: Callable[..., CopyLab], capsys: pytest.CaptureFixture[str]) -> None:
    lab = copy_lab_factory()
    target = str(lab.info.hosts["target"].address)
    # every copy refused on online's way out while the traffic runs (4 s): tcpcopy retries a
    # refused send like a wire loss, so only the sessions whose handshake timed out (3 s)
    # before the rule went away are lost
    rule = ["OUTPUT", "-p", "tcp", "--dport", "80", "-d", target, "-j", "DROP"]
    lab.ns("online", "iptables", "-A", *rule)
    try:
        started = time.time()
        truth = lab.traffic(2000, mode="new", connections=4, rate=500)
        sent = int(truth["sent"])
    finally:
        lab.ns("online", "iptables", "-D", *rule, check=False)
    lab.wait_copies(sent, timeout=30)
    copies = lab.target_copies(since=started, sent=truth)
    code, out = run_cli(capsys, "verify", str(lab.path), "--since-up", "--json")
    report = json.loads(out)
    missing = round(sent - copies)
    assert missing > 0.01 * sent, (missing, sent)  # the fault really cost copies
    assert abs(report["copy_ratio"] - copies / sent) <= 0.001, _brief(report)
    assert not report["verdict"]["passed"] and code == 3
    att = report["attribution"]
    assert att["missing"] == missing
    named = {b["name"]: b["requests"] for b in att["buckets"]}
    assert sum(named.values()) + att["unexplained"] == missing
    # dropped on the online host's way out: tcpcopy's sends failed or sessions never got
    # a SYN-ACK -- path or session emulation, not capture and not the target
    assert named.get("path", 0) + named.get("session", 0) >= 0.8 * missing, att
    assert "capture" not in named and "target" not in named


def test_verify_blames_the_target_when_its_service_is_stopped(
        copy_lab_factory: Callable[..., CopyLab], capsys: pytest.CaptureFixture[str]) -> None:
    """The service under test stopped behind labctl's back (its nginx, by pidfile): every copy
    is refused with a RST, and verify's largest bucket is the target, naming where nothing
    listens -- not the session emulation."""
    lab = copy_lab_factory()
    host = lab.info.hosts["target"]
    pidf = services.pid_file(host, "nginx")
    lab.ns("target", "kill", "-TERM", pidf.read_text().split()[0])
    wait_for(lambda: not pidf.exists(), 15, "target nginx stopped")
    try:
        truth = lab.traffic(300, mode="new", connections=4, rate=300)
        sent = int(truth["sent"])
        # every refused handshake has run out (tcpcopy retries a refused SYN until then)
        wait_for(lambda: lab_counter(lab, "sessions_refused") >= sent, 30,
                 "every copy refused")
        code, out = run_cli(capsys, "verify", str(lab.path), "--since-up", "--json")
    finally:
        subprocess.run(services.start_argv(lab.info, host, "nginx"), check=False, timeout=60)
        services.wait_pid_file(host, "nginx", time.monotonic() + 15)
    report = json.loads(out)
    assert code == 3 and not report["verdict"]["passed"]
    att = report["attribution"]
    named = {b["name"]: b for b in att["buckets"]}
    assert att["missing"] == sent and "target" in named, att
    assert named["target"]["requests"] >= 0.999 * sent, att
    assert f"nothing listens on {host.address}:80" in named["target"]["evidence"], att
    assert att["unexplained"] == 0, att


def lab_counter(lab: CopyLab, name: str) -> int:
    """A counter of online's tcpcopy, from its stats file."""
    stats = Path(daemons.files(lab.inv.remote_dir(lab.inv.hosts.online[0]), "tcpcopy")["stats"])
    try:
        return int(json.loads(stats.read_text()).get("counters", {}).get(name, 0))
    except (OSError, ValueError):
        return 0


def test_verify_sampling_30_multiplier_2(copy_lab_factory: Callable[..., CopyLab],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    lab = copy_lab_factory(sample=30, multiplier=2)
    truth = lab.traffic(3000, mode="new", connections=4, rate=600)
    sent = int(truth["sent"])
    lab.wait_copies(int(sent * 0.6), timeout=30)
    code, out = run_cli(capsys, "verify", str(lab.path), "--since-up", "--json")
    report = json.loads(out)
    assert report["expected_ratio"] == pytest.approx(0.6)
    assert abs(report["copy_ratio"] - 0.6) <= report["verdict"]["tolerance"], _brief(report)
    assert report["verdict"]["passed"], report["verdict"]
    assert code == 0
