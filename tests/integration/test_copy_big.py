"""Fidelity with large responses: ``GET /big`` (1 MiB) mixed with small requests, keep-alive
and new connections (root; builds its own lab). Before the response-size pacing, the short
PSH segment of nginx's response header ended the response: the next request and the client's
FIN went out while the target was still sending, nginx closed with the pipelined requests
unread, and ~40 % of the copies were lost."""

from __future__ import annotations

import collections

import pytest

from tests.integration.copyrig import Rig, fidelity, settle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def body_sizes(rig: Rig, online: bool) -> collections.Counter:
    """(uri without query, status, body bytes) per request in an access log."""
    host = rig.lab.host("online" if online else "target")
    out: collections.Counter = collections.Counter()
    path = host.access_log
    if path is None or not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        f = line.split()
        if online or f[0].startswith(rig.fake_prefix):
            out[(f[3].split("?")[0], f[5], f[6])] += 1
    return out


def test_big_responses_mixed_keepalive_and_new_connections(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy()
    res = rig.traffic("--requests", "500", "--mode", "mixed", "--connections", "6",
                      "--rate", "300", "--get-paths", "/,/big,/slow", "--post-sizes", "0,1024",
                      "--seq-query", timeout=120)
    assert not res.get("errors"), res
    truth = rig.online_truth()
    assert sum(truth.values()) == 500
    assert sum(n for (m, u, _), n in truth.items() if u.startswith("/big")) == 100
    copies = settle(rig, 500, timeout=90, quiet=8.0)
    st = rig.stats("tcpcopy").get("counters", {})
    ratio = fidelity(truth, copies)
    assert ratio >= 0.999, (ratio, sum(copies.values()), st)
    # the target sent every response in full: no request cut short by an early FIN or RST
    assert body_sizes(rig, online=False) == body_sizes(rig, online=True)
    assert st["resp_rst"] == 0, st
