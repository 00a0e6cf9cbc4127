"""The fuzz package's end: the slowest input per target, printed once after its last test
(``-s`` shows it), whichever of its modules ran."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.unit.fuzz.shared import SLOWEST


@pytest.fixture(scope="package", autouse=True)
def _report_slowest() -> Iterator[None]:
    yield
    print("\nF1 slowest input per target (ms): " + ", ".join(
        f"{k}={v * 1000:.1f}" for k, v in sorted(SLOWEST.items())))
