"""labctl.transport.ssh._collect: a silent command makes labctl ask whether the host still
answers; a dead link is reported at once instead of at the command's timeout."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from labctl.transport import ssh


class SilentChannel:
    """A channel that never gets output (until `finish_at`), with a real fd for select()."""

    def __init__(self, finish_at: float = float("inf")) -> None:
        self.r, self.w = os.pipe()
        self.finish_at = finish_at
        self.closed = False

    def fileno(self) -> int:
        return self.r

    def recv_ready(self) -> bool:
        return False

    def recv_stderr_ready(self) -> bool:
        return False

    def exit_status_ready(self) -> bool:
        return time.monotonic() >= self.finish_at

    @property
    def eof_received(self) -> bool:
        return self.exit_status_ready()

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True
        os.close(self.r)
        os.close(self.w)


def test_dead_link_is_reported_after_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "PROBE_AFTER", 0.2)
    asked: list[float] = []

    def alive() -> bool:
        asked.append(time.monotonic())
        return False

    start = time.monotonic()
    with pytest.raises(EOFError, match="no answer from the host"):
        ssh._collect(SilentChannel(), 60.0, alive)  # type: ignore[arg-type]
    assert len(asked) == 1 and time.monotonic() - start < 5


def test_live_host_keeps_waiting_and_probes_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "PROBE_AFTER", 0.2)
    asked: list[float] = []

    def alive() -> bool:
        asked.append(time.monotonic())
        return True

    chan: Any = SilentChannel(finish_at=time.monotonic() + 1.0)
    code, out, err = ssh._collect(chan, 60.0, alive)
    assert code == 0 and (out, err) == ("", "")
    assert 2 <= len(asked) <= 6, asked        # every ~0.2 s of silence


def test_timeout_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "PROBE_AFTER", 10.0)
    chan: Any = SilentChannel()
    code, _, _ = ssh._collect(chan, 0.3)
    assert code is None and chan.closed
