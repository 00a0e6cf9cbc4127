"""The SSH transport over a real sshd in the lab: large outputs arrive whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.inventory import parse_inventory, render_lab_inventory
from labctl.lab import LabInfo
from labctl.transport import HostPool

pytestmark = pytest.mark.integration


def test_large_output_is_not_cut_short(lab: LabInfo, tmp_path: Path) -> None:
    inv = parse_inventory(render_lab_inventory(lab), str(tmp_path / "inventory.yaml"))
    size = 3_000_000
    with HostPool.open(inv) as pool:
        transport = pool.transport("target")
        for _ in range(3):
            result = transport.run(["head", "-c", str(size), "/dev/zero"]).check()
            assert len(result.stdout) == size
