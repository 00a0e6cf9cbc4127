"""`test_every_check_id_has_fired` runs after every other test of this package, whatever the
collection order; with only part of the package selected it is skipped, saying so."""

from __future__ import annotations

import pytest

LAST = "test_every_check_id_has_fired"
PACKAGE = "tests/unit/checks/"
DESELECTED: list[str] = []


def pytest_deselected(items: list[pytest.Item]) -> None:
    DESELECTED.extend(i.nodeid for i in items if i.nodeid.startswith(PACKAGE))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [i for i in items if i.name == LAST]
    items[:] = [i for i in items if i.name != LAST] + last
