"""Progress lines of `labctl up`/`demo`: one line per message, never cut at 80 columns."""

from __future__ import annotations

import io
import sys

import pytest

from labctl.cli import console
from labctl.cli.console import progress

LONG = ("[target] route 10.79.3.0/24 via the assistant 10.77.3.30 (replies to fake clients) "
        "journaled in /var/lib/labctl/averyverylonglabname/target/journal.json before it runs")


def test_long_progress_line_is_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    monkeypatch.setenv("COLUMNS", "80")
    console.err.cache_clear()
    try:
        with progress() as say:
            say(LONG)
    finally:
        console.err.cache_clear()
    lines = buf.getvalue().splitlines()
    assert len(LONG) > 80
    assert any(line.endswith(LONG) for line in lines), lines  # the whole message, one line
