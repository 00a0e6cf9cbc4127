"""The SSH transport over a real sshd in the lab: large outputs arrive whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo
from labctl.lab.inventory import render_lab_inventory
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


def test_link_cut_mid_command_is_reported_within_seconds(lab: LabInfo, tmp_path: Path) -> None:
    """SSH packets dropped (in the lab's own online namespace) while a long, silent command
    runs: the transport's probe finds the host gone and says so in about PROBE_AFTER +
    PROBE_TIMEOUT seconds, not at the command's 60 s timeout."""
    import subprocess
    import threading
    import time

    from labctl.transport import ssh as ssh_mod
    from labctl.transport.base import ConnectionLost

    inv = parse_inventory(render_lab_inventory(lab), str(tmp_path / "inventory.yaml"))
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]
    cut = threading.Timer(1.0, lambda: subprocess.run(
        [*lab.ns_argv("online"), "iptables", "-w", "-I", *rule], check=True))
    try:
        with HostPool.open(inv) as pool:
            transport = pool.transport("online")
            transport.run(["true"]).check()
            cut.start()
            start = time.monotonic()
            with pytest.raises(ConnectionLost) as exc:
                transport.run(["sleep", "50"])
            took = time.monotonic() - start
        assert "no answer from the host" in exc.value.message
        assert took < ssh_mod.PROBE_AFTER + ssh_mod.PROBE_TIMEOUT + 10, took
    finally:
        cut.cancel()
        subprocess.run([*lab.ns_argv("online"), "iptables", "-w", "-D", *rule], check=False,
                       capture_output=True)


def test_an_upload_is_never_readable_beyond_its_mode(lab: LabInfo, tmp_path: Path) -> None:
    """put(..., 0o600) creates the file 0600 before writing a byte (issue 13 review: the
    channel key was written with the server's default mode, then chmodded), replaces an
    existing file, and leaves no temporary file behind."""
    inv = parse_inventory(render_lab_inventory(lab), str(tmp_path / "inventory.yaml"))
    src = tmp_path / "secret"
    src.write_bytes(b"k" * 200_000)
    remote = f"{lab.dir}/target/put-test.key"
    with HostPool.open(inv) as pool:
        t = pool.transport("target")
        t.run(["sh", "-c", f"echo old > {remote}; chmod 644 {remote}"]).check()
        t.put(str(src), remote, mode=0o600)
        mode = t.run(["stat", "-c", "%a %s", remote]).check().stdout.split()
        left = t.run(["sh", "-c", f"ls {remote}.part-* 2>/dev/null | wc -l"]).check().stdout
        t.run(["rm", "-f", remote]).check()
    assert mode == ["600", "200000"] and left.strip() == "0"
