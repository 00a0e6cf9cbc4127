"""The target's own failures, named as such: a copied port where nothing listens (preflight
warning, `--strict` refusal, verify's target bucket) and a target answering 500 on one endpoint
(verify's per-endpoint error share)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from labctl.inventory.load import parse_inventory
from labctl.lab import LabInfo, services
from labctl.lab.inventory import render_lab_inventory
from labctl.up import down as ops_down
from tests.integration.copyrig import wait_for
from tests.integration.test_verify import CopyLab, copy_lab_factory, lab_counter, run_cli

pytestmark = pytest.mark.integration
__all__ = ["copy_lab_factory"]  # the fixture, re-used


def test_copied_port_where_nothing_listens(lab_factory: Callable[..., LabInfo], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    info = lab_factory()
    text = render_lab_inventory(info).replace("{port: 80, target_port: 80}",
                                              "{port: 80, target_port: 8081}")
    assert "target_port: 8081" in text
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    inv = parse_inventory(text, source=str(path))
    target = str(info.hosts["target"].address)

    code, out = run_cli(capsys, "plan", str(path), "--strict", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["refused"] is True, out   # the warning blocks under --strict
    found = [f for f in doc["findings"] if f["id"] == "target.not_listening"]
    assert found and f"{target}:8081" in found[0]["message"], out
    grouped = [g for g in doc["finding_groups"] if g["id"] == "target.not_listening"]
    assert grouped and grouped[0]["hosts"] == ["target"], out
    code, out = run_cli(capsys, "plan", str(path))      # a warning only: `up` would go ahead
    assert code == 0 and "target.not_listening" in out, out
    code, out = run_cli(capsys, "up", str(path), "--strict")
    assert code == 1 and "refused: nothing was changed" in out, out

    code, out = run_cli(capsys, "up", str(path))   # a warning only: the service may start later
    try:
        assert code == 0, out
        lab = CopyLab(info, inv, path)
        truth = lab.traffic(200, mode="new", connections=4, rate=200)
        sent = int(truth["sent"])
        wait_for(lambda: lab_counter(lab, "sessions_refused") >= sent, 30, "copies refused")
        code, out = run_cli(capsys, "verify", str(path), "--since-up", "--json")
        report = json.loads(out)
        assert code == 3, out
        att = report["attribution"]
        named = {b["name"]: b for b in att["buckets"]}
        assert named["target"]["requests"] >= 0.999 * sent, att
        assert f"nothing listens on {target}:8081" in named["target"]["evidence"], att
        assert att["unexplained"] == 0, att
    finally:
        ops_down.down(inv)


ERROR_ENDPOINT = """
        location = /oops { return 500; }
"""


def test_target_error_share_per_endpoint(copy_lab_factory: Callable[..., CopyLab],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The target (only) answers 500 on /oops: verify shows its error share for that endpoint
    and nowhere else."""
    lab = copy_lab_factory()
    host = lab.info.hosts["target"]
    conf = host.dir / "nginx.conf"
    text = conf.read_text()
    marker = "        server_name target;"
    assert marker in text
    conf.write_text(text.replace(marker, marker + ERROR_ENDPOINT, 1))
    lab.ns("target", "nginx", "-t", "-c", str(conf))
    pid = services.pid_file(host, "nginx").read_text().split()[0]
    before = _error_lines(host.access_log)
    subprocess.run(["kill", "-HUP", pid], check=True, timeout=30)
    wait_for(lambda: _serves_500(lab), 15, "target serving 500 on /oops")
    truth = lab.traffic(400, mode="keepalive", connections=4, rate=400,
                        get_paths="/,/oops,/static/a")
    sent = int(truth["sent"])
    lab.wait_copies(sent)
    code, out = run_cli(capsys, "verify", str(lab.path), "--since-up", "--json")
    report: dict[str, Any] = json.loads(out)
    errors = report["target_errors"]
    assert list(errors) == ["GET /oops"], errors
    bad, total = errors["GET /oops"]
    # one request in six is GET /oops (3 GETs, then POST /echo with 3 body sizes); nginx
    # closes a keep-alive connection after a 500, so a copy or two may be lost restarting it
    assert bad == total and total >= 0.9 * (sent // 6), errors
    # the online server answered them all: it is the target's failure, not the copy's
    assert _error_lines(host.access_log) > before
    assert code in (0, 3), out


def _serves_500(lab: CopyLab) -> bool:
    # asked from inside the target's own namespace (its own address)
    res = lab.ns("target", "curl", "-s", "--max-time", "3", "-o", "/dev/null", "-w",
                 "%{http_code}", f"http://{lab.info.hosts['target'].address}/oops", check=False)
    return res.stdout.strip() == "500"


def _error_lines(log: Path | None) -> int:
    assert log is not None
    try:
        return sum(1 for line in log.read_text().splitlines() if '" 500 ' in line)
    except OSError:
        return 0

