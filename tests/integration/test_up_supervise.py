"""`labctl up --supervise` in the lab (hot backup): tcpcopy killed with SIGKILL twice and
intercept once while paced new connections flow (200 req/s): each restarted within 3 s by the
engine's supervisor (the lab hosts have no systemd), the requests outside the outage windows
copied (>= 99.9 %), the restarts counted by `status --json` and `--prometheus`, and `down`
stops the supervisors first and leaves no process, route or rule behind.

The short CI form of bench/supervise_soak.py (which it runs for 30 s instead of 10 minutes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.supervise_soak import report, soak

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_supervised_daemons_survive_sigkill_and_down_ends_them(lab: Any,
                                                                tmp_path: Path) -> None:
    result = soak(lab, tmp_path, duration=30.0, rate=200.0, say=lambda msg: None)
    text = report(result) + "\n" + json.dumps(result, indent=1, sort_keys=True)
    assert all(result["supervisors"].values()), text        # both under the engine's supervisor
    assert [k["daemon"] for k in result["kills"]] == ["tcpcopy", "tcpcopy", "intercept"], text
    assert all(k["restart_s"] < 3.0 for k in result["kills"]), text
    copy = result["copy"]
    assert copy["sent"] >= 0.9 * 30 * 200 and copy["after_last_restore"] > 0, text
    assert copy["outside_ratio"] is not None and copy["outside_ratio"] >= 0.999, text
    assert result["status_restarts"] == {"tcpcopy": 2, "intercept": 1}, text
    assert any(ln.startswith("tcpcopy_restarts{") and ln.endswith(" 2")
               for ln in result["prometheus_restarts"]), text
    assert result["down_ok"], text
    assert result["left_processes"] == [] and result["left_tagged"] == [], text
    assert result["restored"], text
