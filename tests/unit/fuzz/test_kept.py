"""F1's kept crashers: each file under ``tests/fixtures/fuzz/<target>/`` (an input that once
broke a rule) replayed through its target's test, so the fix stays (see
``tests/unit/fuzz/__init__.py``)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from labctl.verify.logparse import LogFormat
from tests.unit.fuzz import test_text as text  # the module: its tests are collected there only
from tests.unit.fuzz.shared import KEPT


def replay(target: str, data: bytes) -> None:
    if target == "logformat":
        fmt, _, line = data.decode().partition("\n")
        text.test_custom_log_formats_raise_only_value_error.hypothesis.inner_test(fmt, line)  # type: ignore[attr-defined]
    elif target == "logline":
        fmt, _, line = data.decode().partition("\n")
        with contextlib.suppress(ValueError):
            LogFormat(fmt).parse_line(line)
    elif target == "inventory":
        text.test_inventory_loader_raises_only_inventory_error.hypothesis.inner_test(  # type: ignore[attr-defined]
            data.decode())
    elif target == "runbook":
        text.test_runbook_loader_raises_only_runbook_error.hypothesis.inner_test(  # type: ignore[attr-defined]
            data.decode())
    else:
        raise AssertionError(f"no replay for {target}")


KEPT_FILES = sorted(p for p in KEPT.glob("*/*") if p.is_file()) if KEPT.is_dir() else []


@pytest.mark.parametrize("path", KEPT_FILES, ids=[f"{p.parent.name}/{p.name}" for p in KEPT_FILES])
def test_kept_crashers_stay_fixed(path: Path) -> None:
    replay(path.parent.name, path.read_bytes())
