"""Every preflight check id (`labctl.up.checks.CHECK_IDS`) has fired in a test of this package."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.up.checks import CHECK_IDS
from tests.unit.checks.conftest import DESELECTED, PACKAGE
from tests.unit.checks.fired import FIRED

FAMILIES = sorted(p.name for p in Path(__file__).parent.glob("test_*.py")
                  if p.name != Path(__file__).name)


def test_every_check_id_has_fired(request: pytest.FixtureRequest) -> None:
    ran = {item.nodeid.split("::")[0] for item in request.session.items}
    missing = [f for f in FAMILIES if f"{PACKAGE}{f}" not in ran]
    if DESELECTED or missing:
        pytest.skip(f"only part of {PACKAGE} ran ({', '.join(missing) or 'tests deselected'}):"
                    " run the whole package to see every check id fire")
    assert set(CHECK_IDS) <= FIRED, sorted(set(CHECK_IDS) - FIRED)
