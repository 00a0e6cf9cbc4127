"""The check ids the tests of this package saw fire (for `test_every_check_id.py`)."""

from __future__ import annotations

from labctl.model import Finding

FIRED: set[str] = set()


def ids(findings: list[Finding]) -> set[str]:
    """The ids of `findings`, remembered as fired."""
    FIRED.update(f.id for f in findings)
    return {f.id for f in findings}
