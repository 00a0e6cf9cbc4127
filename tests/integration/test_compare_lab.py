"""`labctl compare` in a lab with two targets (`labctl lab up --targets 2`: target is the
baseline, target2 the candidate), with real nginx logs read over SSH (root; own lab), and the
`ab-compare` drill, which builds such a lab itself.

The lab's home page says "hello from <role>": the candidate's ("target2") is longer than the
baseline's, while online's and the baseline's are the same length. So `GET /` must be flagged
(body size differs in every matched request, no noise) and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from labctl.cli import main
from labctl.lab import destroy_lab, list_labs
from tests.integration.conftest import unique_lab_name
from tests.integration.copyrig import REPO, log_requests, wait_for
from tests.integration.test_up_down_helpers import labctl, write_inventory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REQUESTS = 1500


def _copies(info: Any, role: str) -> int:
    prefix = info.fake_pool.rsplit(".", 1)[0] + "."
    return sum(log_requests(info.hosts[role].access_log, prefix).values())


def test_compare_flags_only_the_candidates_longer_page(lab_factory: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    info = lab_factory(targets=2)
    inv = write_inventory(info, tmp_path)
    up = labctl(tmp_path, "up", str(inv))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        subprocess.run(
            [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
             f"http://{info.hosts['online'].address}", "--requests", str(REQUESTS), "--mode",
             "mixed", "--connections", "4", "--get-paths", "/,/api/items/1,/api/items/22,"
             "/static/a", "--post-sizes", "0,512", "--json"],
            capture_output=True, text=True, timeout=120, check=True, cwd=str(REPO))
        want = int(REQUESTS * 0.999)
        for role in ("target", "target2"):
            wait_for(lambda r=role: _copies(info, r) >= want, 30, f"{want} copies on {role}")
        res = labctl(tmp_path, "compare", "--since-up", "--json", "--report",
                     str(tmp_path / "report"))
        assert res.returncode == 3, res.stdout + res.stderr
        doc = json.loads(res.stdout)
        assert doc["hosts"]["baseline"] == "target" and doc["hosts"]["candidate"] == "target2"
        assert doc["matched"] >= want
        assert [(f["endpoint"], f["kind"]) for f in doc["flags"]] == [("GET /", "body_size")]
        assert "differs in 100 %" in doc["flags"][0]["summary"]
        assert "GET /api/items/{id}" in {e["endpoint"] for e in doc["endpoints"]}
        assert (tmp_path / "report" / "report.md").exists()
        table = labctl(tmp_path, "compare", "--since-up")
        assert table.returncode == 3 and "verdict: REGRESSION" in table.stdout
        assert "error: verdict REGRESSION: GET /: body size differs" in table.stderr
    finally:
        down = labctl(tmp_path, "down", str(inv))
        assert down.returncode == 0, down.stdout + down.stderr


def test_ab_compare_drill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path / "state"))
    name = unique_lab_name("h8")
    runbook = Path(__file__).resolve().parents[2] / "runbooks" / "ab-compare.yaml"
    try:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(["drill", str(runbook), "--lab-name", name, "--report-dir",
                  str(tmp_path / "report"), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert exc.value.code == 0, out["reasons"]
        result = json.loads((tmp_path / "report" / "result.json").read_text())
        steps = result["steps"]
        assert [s["status"] for s in steps] == ["ok"] * 7
        first, second = steps[2], steps[4]
        assert first["details"]["compare verdict"] == "PASS"
        assert first["comparison"]["flags"] == []
        assert second["details"]["compare verdict"] == "REGRESSION"
        assert [(f["endpoint"], f["kind"]) for f in second["comparison"]["flags"]] == [
            ("GET /", "body_size")]
    finally:
        destroy_lab(name)
    assert name not in list_labs()
