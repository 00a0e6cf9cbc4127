"""Fan-in and several `-x` mappings through a whole verify run on scripted hosts: two online
hosts' logs and the target's are fetched over FakeTransport, both online sides are summed, copies
from both are matched, and each mapping gets its own figures. (The local lab has one online
host, so fan-in is proven here, at unit level.)"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pytest
from rich.console import Console

from labctl.cli.render import verify as rv
from labctl.inventory.load import parse_inventory
from labctl.transport.fake import FakeTransport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as V
from labctl.verify import logparse as lp
from labctl.verify.ports import MappingFigures
from tests.unit.test_ledger_fetch import Disk

BASE = 1795764745
FMT = lp.LABCTL_V1 + " $server_port"
INVENTORY = f"""
lab: hcfan
hosts:
  online:
    - {{name: on1, address: 10.77.1.10}}
    - {{name: on2, address: 10.77.1.11}}
  target: {{name: target, address: 10.77.1.20}}
  assistant: {{name: assistant, address: 10.77.1.30}}
services: [{{port: 80, target_port: 8080}}, {{port: 81, target_port: 8081}}]
clients: {{pool: [10.79.1.x], networks: [10.79.1.0/24], real_networks: [10.78.1.0/24]}}
logs:
  online: {{path: /log/online.log, format: '{FMT}'}}
  target: {{path: /log/target.log, format: '{FMT}'}}
state_dir: /state
"""
MAP = {80: 8080, 81: 8081}


def line(t: float, addr: str, method: str, uri: str, body: int | None, port: int) -> str:
    iso = datetime.fromtimestamp(t, tz=timezone.utc).isoformat()
    cl = "-" if body is None else str(body)
    return f'{addr} [{iso}] "{method} {uri} HTTP/1.1" 200 6 79 "{cl}" 0.001 1 1 "x" {port}\n'


Req = tuple[float, str, str, Optional[int], int]


def requests() -> dict[str, list[Req]]:
    """on1: 20 GETs alternating ports 80/81; on2: 10 POSTs (6 on port 80, 4 on 81)."""
    on1: list[Req] = [(BASE + i, "GET", f"/a{i % 4}", None, 80 if i % 2 == 0 else 81)
                      for i in range(20)]
    on2: list[Req] = [(BASE + i + 0.5, "POST", "/echo", 100 + i, 80 if i < 6 else 81)
                      for i in range(10)]
    return {"on1": on1, "on2": on2}


def test_fan_in_and_two_mappings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    inv = parse_inventory(INVENTORY)
    fakes = {n: FakeTransport(n) for n in ("on1", "on2", "target", "assistant")}
    disks = {n: Disk(f) for n, f in fakes.items()}
    for f in fakes.values():
        f.on(["cat", *V.CONNTRACK], stdout="10\n1000\n")
        f.on_regex(r"^cat /state/hcfan/\w+/journal.json$", exit_code=1, stderr="No such file")
    reqs = requests()
    copies: list[str] = []
    for host, recs in reqs.items():
        text = "".join(line(t, "10.78.1.10", m, u, b, p) for t, m, u, b, p in recs)
        disks[host].files["/log/online.log"] = (text.encode(), 1)
    for t, m, u, b, p in reqs["on1"]:  # every copy of on1 arrives on its mapped port
        copies.append(line(t + 0.2, "10.79.1.7", m, u, b, MAP[p]))
    for i, (t, m, u, b, p) in enumerate(reqs["on2"]):
        if i < 3:
            continue  # three of on2's port-80 requests never copied
        port = 8080 if i == 6 else MAP[p]  # one port-81 copy lands on the wrong port
        copies.append(line(t + 0.2, "10.79.1.8", m, u, b, port))
    disks["target"].files["/log/target.log"] = ("".join(copies).encode(), 3)
    V.save_marks(V.Marks("hcfan", 1.0, [
        V.LogMark("on1", "/log/online.log", 0, 1), V.LogMark("on2", "/log/online.log", 0, 1),
        V.LogMark("target", "/log/target.log", 0, 3)]))
    scope = V.resolve_scope(inv, since_up=True, window=None)
    with HostPool(inv, factory=lambda spec: fakes[spec.name]) as pool:
        report = V.run_verify(inv, pool, scope, clock=lambda: BASE + 100.0)

    assert report.online_by_host == {"on1": 20, "on2": 10}
    assert report.online_requests == 30 and report.target_requests == 27
    # on1 20 + on2 (3 port-80 + 3 port-81): the wrong-port copy matches nothing
    assert report.target_matched == 26 and report.target_excess == 1
    assert report.attribution.missing == 4 and report.attribution.unexplained == 4
    assert report.by_mapping == [
        MappingFigures(80, 8080, online=16, target=14, matched=13, expected=16.0, missing=3,
                       loss_pct=pytest.approx(18.75)),  # type: ignore[arg-type]
        MappingFigures(81, 8081, online=14, target=13, matched=13, expected=14.0, missing=1,
                       loss_pct=pytest.approx(100 / 14)),  # type: ignore[arg-type]
    ]
    assert not report.verdict.passed and report.leaks == 0
    console = Console(file=io.StringIO(), width=160)
    console.print(rv.ledger_view(report))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "per -x mapping" in shown and "8081" in shown
    for host in ("on1", "on2"):  # only the new part of each log, once
        assert fakes[host].commands.count(("tail", "-c", "+1", "/log/online.log")) == 1


def test_without_ports_in_the_logs_mappings_are_not_told_apart() -> None:
    from labctl.verify import ledger as L

    on = [lp.LogRecord(BASE + i, "10.78.1.10", "GET", "/", 200, 1, 1, None, 0.0)
          for i in range(4)]
    tg = [lp.LogRecord(BASE + i + 0.1, "10.79.1.7", "GET", "/", 200, 1, 1, None, 0.0,
                       server_port=9999) for i in range(4)]
    rep = L.build(L.LedgerInput({"o": on}, tg, port_map=MAP))
    assert rep.target_matched == 4 and rep.by_mapping == []
