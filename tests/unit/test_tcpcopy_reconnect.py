"""tcpcopy -L after its last intercept is lost (``engine.tcpcopy.channel``): the table holds
its sessions, reconnection is retried 0.1 s later with the delay doubling up to
``--reconnect-interval``, and the refused attempts are logged once (a loopback port where
nothing listens; no packet leaves the host)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from engine.options import parse_tcpcopy_args
from engine.stats import Logger
from engine.tcpcopy import Tcpcopy
from engine.tcpcopy.channel import RECONNECT_FIRST


def closed_port() -> int:
    """A loopback port with no listener (bound once, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_lost_intercept_is_retried_soon_backing_off_and_logged_once(tmp_path: Path) -> None:
    log = tmp_path / "tcpcopy.log"
    opts = parse_tcpcopy_args(["-x", "80-10.77.1.20:80", "-s", f"127.0.0.1:{closed_port()}",
                               "-L", "-C", "2", "--reconnect-interval", "0.4"])
    tc = Tcpcopy(opts, Logger(str(log)))
    try:
        tc.channel.running = True
        attempts: list[float] = []
        connect = tc.intercepts.connect

        def counted(srv):  # type: ignore[no-untyped-def]
            attempts.append(tc.loop.time())
            connect(srv)

        tc.intercepts.connect = counted  # type: ignore[method-assign]
        start = tc.loop.time()
        tc.channel.housekeeping(start)       # no intercept ready: held, a retry planned
        assert not tc.engine.intercepts_up and tc.engine.down_since == start
        deadline = time.monotonic() + 5.0
        while len(attempts) < 6 and time.monotonic() < deadline:
            tc.loop.run_once(0.05)
        assert len(attempts) >= 6, attempts
        gaps = [b - a for a, b in zip([start, *attempts], attempts)]
        for got, want in zip(gaps, [RECONNECT_FIRST, 0.2, 0.4, 0.4, 0.4]):
            assert want - 0.01 <= got <= want + 0.5, gaps     # a busy box may run late
        text = log.read_text()
        assert text.count("connect failed") == 1, text     # 2 connections x 6 attempts
        assert text.count("holding 0 live sessions") == 1
    finally:
        tc.intercepts.close()
        tc.loop.close()
