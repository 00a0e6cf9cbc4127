"""`labctl up` with `engine.workers: 2`: tcpcopy and intercept each run two workers (intercept
listening on its port and the next), the copy is complete, both workers carried traffic, and
`down` restores everything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labctl.hosts import daemons
from labctl.inventory.load import parse_inventory
from labctl.up.launch import key_path
from tests.integration.copyrig import wait_for
from tests.integration.test_up_down_helpers import (
    copy_round,
    daemon_status,
    labctl,
    ns_run,
    up_then_down,
    write_inventory,
)

pytestmark = pytest.mark.integration

REQUESTS = 1000
MIN_RATIO = 0.999


def test_up_with_two_workers_copies_everything(lab: Any, tmp_path: Path) -> None:
    """... and with engine.metrics_file each daemon writes its (merged) counters in the
    Prometheus text format, `status --prometheus` prints them, `down` removes the files."""
    prom = f"{tmp_path}/{{host}}-{{daemon}}.prom"

    def edit(text: str) -> str:
        assert "datalink: false" in text
        return text.replace("datalink: false", "datalink: false, workers: 2, runtime: python3, "
                            f"metrics_file: '{prom}'")

    inv = write_inventory(lab, tmp_path, edit=edit)
    plan = labctl(tmp_path, "plan", str(inv))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = " ".join(plan.stdout.split())
    assert "--workers 2 --intercept-workers 2" in shown and "2 workers" in shown, shown
    with up_then_down(lab, tmp_path, inv):
        shipped = parse_inventory(inv.read_text(), source=str(inv))
        assert Path(key_path(shipped, shipped.intercept_host.name)).exists()
        listening = ns_run(lab, "assistant", "ss", "-Hltn")
        assert ":36524 " in listening and ":36525 " in listening, listening
        assert copy_round(lab, REQUESTS, MIN_RATIO, connections=8) == REQUESTS
        tcpcopy = daemon_status(tmp_path)["tcpcopy"]
        assert tcpcopy["workers"] == 2 and len(tcpcopy["extra"]["per_worker"]) == 2, tcpcopy
        parsed = parse_inventory(inv.read_text(), source=str(inv))
        stats_path = daemons.files(parsed.remote_dir(parsed.hosts.online[0]), "tcpcopy")["stats"]
        def per_worker() -> list[int]:
            doc = json.loads(Path(stats_path).read_text())
            return [w["counters"]["sessions_created"] for w in doc["per_worker"]]

        # the parent merges the workers' files every stats interval: wait for a merge that
        # covers the copies just counted at the target
        wait_for(lambda: all(n > 0 for n in per_worker()), 15,
                 "both workers' sessions in the merged stats file")
        stats = json.loads(Path(stats_path).read_text())
        created = [w["counters"]["sessions_created"] for w in stats["per_worker"]]
        assert len(created) == 2 and all(n > 0 for n in created), created   # both worked
        assert stats["counters"]["sessions_created"] == sum(created)
        # the parent's metrics file: the merged counters, under their original names
        metrics = tmp_path / "online-tcpcopy.prom"
        assert (tmp_path / "assistant-intercept.prom").exists()
        wait_for(lambda: f"tcpcopy_sessions_created {sum(created)}" in metrics.read_text(), 10,
                 "the metrics file to catch up with the stats file")
        shown = labctl(tmp_path, "status", "--prometheus")
        assert shown.returncode == 0, shown.stderr
        assert f'tcpcopy_requests_sent{{host="online",lab="{lab.name}"}}' in shown.stdout
        assert "# TYPE intercept_resp_routed counter" in shown.stdout
    # the channel key does not outlive the lab (the lab's hosts share this filesystem)
    parsed = parse_inventory(inv.read_text(), source=str(inv))
    keys = [Path(key_path(parsed, h.name)) for h in (parsed.hosts.online[0],
                                                      parsed.intercept_host)]
    assert not any(k.exists() for k in keys), keys
    assert not list(tmp_path.glob("*.prom"))        # down removed the metrics files

