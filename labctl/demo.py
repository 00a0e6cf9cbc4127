"""`labctl demo`: local lab up -> `up` -> real client traffic -> the target got the copies ->
`down` -> lab destroyed. Everything stays inside the lab's own network namespaces."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from labctl.errors import LabctlError
from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab, destroy_lab
from labctl.lab.inventory import lab_inventory_path, write_lab_inventory
from labctl.up import down as ops_down
from labctl.up import run as ops

Progress = Callable[[str], None]
COPY_WAIT = 20.0


@dataclass
class DemoReport:
    lab: str
    topology: str
    requests: int
    traffic: dict[str, Any] = field(default_factory=dict)
    target_copies: int = 0
    online_requests: int = 0
    up_ok: bool = False
    down_ok: bool = False
    down_noop_twice: bool = False
    kept: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.up_ok and self.down_ok and self.target_copies > 0 and not self.error


def count_from(log: Optional[Path], net: str) -> int:
    """Access-log lines whose first field (remote address) is inside `net` (pure but for read)."""
    if log is None or not log.exists():
        return 0
    network = ipaddress.IPv4Network(net)
    count = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        word = line.split(" ", 1)[0]
        try:
            if ipaddress.IPv4Address(word) in network:
                count += 1
        except ValueError:
            continue
    return count


def wait_copies(log: Optional[Path], net: str, want: int, timeout: float = COPY_WAIT) -> int:
    """Poll the target's access log until `want` copies arrived (or the time is up)."""
    deadline = time.monotonic() + timeout
    got = count_from(log, net)
    while got < want and time.monotonic() < deadline:
        time.sleep(0.25)
        got = count_from(log, net)
    return got


def drive_traffic(info: LabInfo, requests: int) -> dict[str, Any]:
    """Real client traffic from the lab's client namespace to the online host."""
    url = f"http://{info.hosts['online'].address}"
    argv = [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url", url,
            "--requests", str(requests), "--mode", "mixed", "--post-sizes", "0,1024",
            "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    try:
        return dict(json.loads(proc.stdout))
    except ValueError as exc:
        raise LabctlError(f"traffic generator failed (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-400:]}") from exc


def run_demo(name: str, requests: int, keep: bool, say: Progress,
             topology: str = "three-server") -> DemoReport:
    report = DemoReport(name, topology, requests, kept=keep)
    say(f"building the local lab {name} (network namespaces, sshd, nginx)")
    info = build_lab(LabSpec(name=name))
    try:
        assert_routes_via_lab(info)
        path, text = write_lab_inventory(info, topology)
        inv = parse_inventory(text, source=str(path))
        say(f"inventory written to {path}")
        up_report = ops.up(inv, ops.UpOptions(inventory_path=str(path), inventory_text=text,
                                              progress=say))
        if up_report.refused:
            raise ops.refused_error(up_report)
        report.up_ok = up_report.ok
        say(f"driving {requests} client requests to the online server")
        report.traffic = drive_traffic(info, requests)
        sent = int(report.traffic.get("sent", requests))
        say("waiting for the copies to show up in the target's access log")
        pool = str(info.fake_pool) if topology == "three-server" else \
            f"{info.hosts['online'].address}/32"
        report.target_copies = wait_copies(info.hosts["target"].access_log, pool, sent)
        report.online_requests = count_from(info.hosts["online"].access_log, str(info.client_net))
        say(f"target received {report.target_copies} copies of {sent} requests")
        say("taking the copy setup down")
        first = ops_down.down(inv)
        report.down_ok = first.ok
        report.down_noop_twice = ops_down.down(inv).noop
    except LabctlError as exc:
        report.error = exc.render()
        _best_effort_down(name, topology, say)
    finally:
        if not keep:
            say(f"destroying the lab {name}")
            destroy_lab(name)
    return report


def _best_effort_down(name: str, topology: str, say: Progress) -> None:
    try:
        ops_down.down(ops.resolve(str(lab_inventory_path(name, topology))).inventory)
    except (LabctlError, OSError) as exc:
        say(f"down after failure also failed: {exc}")
