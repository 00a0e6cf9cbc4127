"""`labctl demo` end to end: lab up, `up`, real client traffic copied to the target, `down`,
lab destroyed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.lab import load_lab
from tests.integration.conftest import unique_lab_name
from tests.integration.test_up_down_helpers import labctl

pytestmark = pytest.mark.integration


def test_demo_copies_traffic_and_cleans_up(tmp_path: Path) -> None:
    name = unique_lab_name()
    try:
        res = labctl(tmp_path, "demo", "--name", name, "--requests", "60", "--json",
                     timeout=400)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        report = json.loads(res.stdout)
        assert report["traffic"]["sent"] == 60
        assert report["target_copies"] >= 60
        assert report["up_ok"] and report["down_ok"] and report["down_noop_twice"]
        assert "building the local lab" in res.stderr  # progress was shown
        with pytest.raises(Exception, match=name):
            load_lab(name)  # the lab is gone
    finally:
        from labctl.lab import destroy_lab

        destroy_lab(name)
