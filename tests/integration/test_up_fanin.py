"""Two online servers copied to one target (fan-in) in a lab with `online2`: `up` gives each
tcpcopy its own share of the `-c` pool, so even a client that uses the same local port towards
both servers at once gets two separate copies; verify reads both online logs; `down` restores
every host (root; own lab)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.integration.copyrig import REPO
from tests.integration.test_up_down_helpers import (
    labctl,
    snapshot,
    tagged,
    verify_until,
    write_inventory,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# argv: source, online1, online2, count, first port. Each round opens two connections from the
# SAME local port (SO_REUSEADDR), one to each online server, and sends one request on each.
SAME_PORT = r"""
import json, socket, sys
src, a, b, n, base = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ok = 0
for i in range(n):
    socks = []
    for host, tag in ((a, 1), (b, 2)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, base + i))
        s.settimeout(10)
        s.connect((host, 80))
        socks.append((s, tag))
    for s, tag in socks:
        s.sendall(f"GET /?fan={i}&h={tag} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
                  .encode())
    for s, _ in socks:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        ok += data.startswith(b"HTTP/1.1 200")
        s.close()
print(json.dumps({"ok": ok}))
"""


def _client(info: Any, *argv: str) -> dict[str, Any]:
    out = subprocess.run([*info.ns_argv("client"), sys.executable, *argv], capture_output=True,
                         text=True, timeout=120, check=True, cwd=str(REPO))
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_two_online_hosts_fan_in(lab_factory: Callable[..., Any], tmp_path: Path) -> None:
    info = lab_factory(online_hosts=2)
    inv = write_inventory(info, tmp_path)
    before = snapshot(info)
    assert set(before) == {"online", "online2", "target", "assistant"}
    up = labctl(tmp_path, "up", str(inv))
    assert up.returncode == 0, up.stdout + up.stderr
    one, two = info.hosts["online"].address, info.hosts["online2"].address
    src = info.hosts["client"].address
    same = _client(info, "-c", SAME_PORT, src, one, two, "100", "42000")
    assert same["ok"] == 200, same
    for host in (one, two):
        res = _client(info, "-m", "labctl.lab.traffic", "--url", f"http://{host}", "--requests",
                      "300", "--mode", "mixed", "--connections", "3", "--json")
        assert not res.get("errors"), res
    doc = verify_until(tmp_path, lambda d: d["online_requests"] == 800
                       and d["verdict"]["passed"] and d["copy_ratio"] >= 0.999)
    assert doc["online_requests"] == 800 and doc["verdict"]["passed"], doc["verdict"]
    assert doc["copy_ratio"] == pytest.approx(1.0, abs=0.001), json.dumps(doc)[:4000]
    target_log = Path(info.hosts["target"].access_log).read_text()
    for i in range(100):
        for h in (1, 2):
            assert f"/?fan={i}&h={h} " in target_log, (i, h)
    down = labctl(tmp_path, "down", str(inv))
    assert down.returncode == 0, down.stdout + down.stderr
    assert tagged(info) == [] and snapshot(info) == before
