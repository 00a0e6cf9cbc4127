"""Ledger arithmetic: matching, ratios, attribution that always adds up, verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.verify import ledger as L
from labctl.verify import logparse as lp
from labctl.verify.logparse import LogRecord

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
T0 = 1_800_000_000.0


def rec(t: float, uri: str = "/", method: str = "GET", body: int | None = None,
        addr: str = "10.78.1.10", status: int = 200, rt: float = 0.01,
        conn: int | None = None) -> LogRecord:
    return LogRecord(T0 + t, addr, method, uri, status, 10, 100, body, rt, conn, None)


def online_mix(n: int) -> list[LogRecord]:
    uris = ["/", "/echo", "/big", "/slow"]
    return [rec(i * 0.01, uris[i % 4], "POST" if i % 4 == 1 else "GET",
                1024 if i % 4 == 1 else None) for i in range(n)]


def copy(r: LogRecord, lag: float = 0.2, addr: str = "10.79.1.5", **kw: object) -> LogRecord:
    base = {"time": (r.time or 0) + lag, "remote_addr": addr}
    base.update(kw)
    return LogRecord(**{**r.__dict__, **base})


def test_perfect_copy_passes() -> None:
    on = online_mix(1000)
    report = L.build(L.LedgerInput({"online": on}, [copy(r) for r in on],
                                   allowed_sources=["10.79.1.0/24"]))
    assert report.online_requests == 1000 and report.target_matched == 1000
    assert report.copy_ratio == 1.0 and report.loss_pct == 0.0
    assert report.attribution.missing == 0 and report.verdict.passed


def test_matching_ignores_client_ip_but_not_body_length() -> None:
    on = [rec(0, "/echo", "POST", 10), rec(1, "/echo", "POST", 20)]
    tg = [copy(on[0]), copy(on[1], content_length=21)]
    m = L.match(on, tg, 1, 30, 2)
    assert m.matched == 1 and m.unmatched[0].content_length == 21


def test_matching_respects_time_window_and_skew() -> None:
    on = [rec(0, "/a"), rec(100, "/a")]
    tg = [copy(on[0], lag=31), copy(on[1], lag=-1)]
    m = L.match(on, tg, 1, max_lag=30, skew=2)
    # first copy 31 s late: too late for record 0, and 69 s early for record 1 (> skew)
    assert m.matched == 1 and len(m.unmatched) == 1


def test_multiplier_lets_one_record_match_n_times() -> None:
    on = online_mix(100)
    tg = [copy(r, lag=lag) for r in on for lag in (0.1, 0.2, 0.3)]
    assert L.match(on, tg, 2, 30, 2).matched == 200
    report = L.build(L.LedgerInput({"o": on}, tg, multiplier=2))
    assert report.target_excess == 100 and not report.verdict.passed


def test_uri_normalisation_matches_encoded_forms() -> None:
    on = [rec(0, "/p%61th?")]
    assert L.match(on, [copy(on[0], uri="/path")], 1, 30, 2).matched == 1


def test_loss_without_counters_is_unexplained_and_adds_up() -> None:
    on = online_mix(1000)
    tg = [copy(r) for i, r in enumerate(on) if i % 20]  # 5 % lost
    report = L.build(L.LedgerInput({"o": on}, tg))
    a = report.attribution
    assert a.missing == 50 and a.unexplained == 50 and a.buckets == []
    assert report.loss_pct == pytest.approx(5.0)
    assert not report.verdict.passed and "copy ratio 0.9500" in report.verdict.reasons[0]


def stats(host: str = "online", tool: str = "tcpcopy", state: str = "running",
          **counters: int) -> L.DaemonStats:
    return L.DaemonStats(host, tool, state, counters)


def test_attribution_with_requests_sent_splits_before_and_after_send() -> None:
    on = online_mix(1000)
    tg = [copy(r) for i, r in enumerate(on) if i % 10]  # 100 missing
    daemons = [stats(requests_sent=960, kernel_drops=25, sessions_shed=5, sessions_timeout=3,
                     send_errors=7)]
    a = L.build(L.LedgerInput({"o": on}, tg, daemons=daemons)).attribution
    got = {b.name: b.requests for b in a.buckets}
    # before send 40: capture 25, session 8, unexplained 7; after send 60: all path
    assert got == {"capture": 25, "session": 8, "path": 60}
    assert a.unexplained == 7
    assert sum(got.values()) + a.unexplained == a.missing == 100


def test_attribution_target_errors_and_slow_target() -> None:
    on = online_mix(400)
    tg = [copy(r, status=503 if i < 10 else 200, request_time=3.0 if i % 2 else 0.01)
          for i, r in enumerate(on) if i % 8]  # 50 missing
    daemons = [stats(requests_sent=400, sessions_timeout=30)]
    rep = L.build(L.LedgerInput({"o": on}, tg, daemons=daemons))
    got = {b.name: b.requests for b in rep.attribution.buckets}
    assert got == {"target": 38, "path": 12}  # 8 copies with 503 + 30 timeouts (slow target)
    assert rep.latency_diff.p99 == pytest.approx(2.99)


def test_attribution_without_requests_sent_caps_each_bucket() -> None:
    a = L.attribute(100, [stats(kernel_drops=10, sessions_no_synack=20, send_errors=5),
                          stats("assistant", "intercept", resp_unrouted=1000)], 900, 0, False)
    assert [(b.name, b.requests) for b in a.buckets] == [
        ("capture", 10), ("session", 20), ("path", 70)]
    assert a.unexplained == 0


def test_fan_in_counts_every_online_host() -> None:
    a, b = online_mix(300), [copy(r, lag=0.001) for r in online_mix(200)]
    tg = [copy(r) for r in a + b]
    rep = L.build(L.LedgerInput({"on1": a, "on2": b}, tg))
    assert rep.online_by_host == {"on1": 300, "on2": 200}
    assert rep.online_requests == 500 and rep.target_matched == 500 and rep.verdict.passed


def test_leaks_and_daemon_down_fail_the_verdict() -> None:
    on = online_mix(100)
    tg = [copy(r) for r in on] + [copy(on[0], addr="10.78.1.10")]
    rep = L.build(L.LedgerInput({"o": on}, tg, allowed_sources=["10.79.1.0/24"],
                                daemons=[stats("assistant", "intercept", "missing")]))
    assert rep.leaks == 1 and rep.leak_sources == {"10.78.1.10": 1}
    assert rep.target_matched == 100
    assert len(rep.verdict.reasons) == 2
    assert "intercept on assistant is missing" in rep.verdict.reasons[1]


def test_sampling_and_multiplier_expected_ratio() -> None:
    on = [rec(i * 0.01, conn=i) for i in range(2000)]
    tg = [copy(r, lag=lag) for i, r in enumerate(on) if i % 10 < 3 for lag in (0.1, 0.2)]
    rep = L.build(L.LedgerInput({"o": on}, tg, sample_percent=30, multiplier=2,
                                daemons=[stats(clt_syn=2000, sampled_out=2800,
                                              sessions_created=1200)]))
    assert "tcpcopy kept 30.0 % of client SYNs (configured 30 %)" in rep.notes
    assert rep.expected_ratio == pytest.approx(0.6) and rep.copy_ratio == pytest.approx(0.6)
    assert rep.verdict.passed and rep.verdict.tolerance > 0.003
    assert any("sampling 30 %" in n for n in rep.notes)


def test_sampling_sd_uses_session_sizes() -> None:
    singles = [rec(i, conn=i) for i in range(100)]
    tens = [rec(i, conn=i // 10) for i in range(100)]
    assert L.sampling_sd(singles, 50, 1) == pytest.approx(0.05)
    assert L.sampling_sd(tens, 50, 1) == pytest.approx(0.05 * 10 ** 0.5)
    assert L.sampling_sd(singles, 100, 1) == 0.0


def test_window_ignores_records_outside() -> None:
    on = online_mix(1000)  # t in [0, 10)
    tg = [copy(r) for r in on]
    rep = L.build(L.LedgerInput({"o": on}, tg, window=(T0 + 5, T0 + 10)))
    assert rep.online_requests == 500 and rep.target_matched == 500
    assert rep.target_excess == 0 and rep.verdict.passed


def test_worst_endpoints_and_status_mix() -> None:
    on = online_mix(400)
    tg = [copy(r) for r in on if r.uri != "/big"]
    rep = L.build(L.LedgerInput({"o": on}, tg))
    assert rep.worst_endpoints[0].endpoint == "GET /big"
    assert rep.worst_endpoints[0].loss_pct == 100.0 and len(rep.worst_endpoints) == 1
    assert rep.status_online == {200: 400} and rep.status_target == {200: 300}


def test_percentile_nearest_rank() -> None:
    assert L.percentile([0.1, 0.2, 0.3, 0.4], 50) == 0.2
    assert L.percentile(list(range(1, 101)), 99) == 99
    assert L.percentile([], 50) is None


def test_ledger_on_recorded_logs() -> None:
    fmt = lp.LogFormat("labctl")
    on = lp.parse_text((LOGS / "labctl.log").read_text(), fmt).records
    tg = lp.parse_text((LOGS / "combined.log").read_text(), lp.LogFormat("combined")).records
    # combined logs no body length, so only the GETs (no body either side) can match
    rep = L.build(L.LedgerInput({"o": on}, [r for r in tg if r.method == "GET"]))
    assert rep.online_requests == 13 and rep.target_matched == 7
    assert rep.attribution.missing == 6


def test_target_refusals_and_resets_are_the_targets_bucket() -> None:
    """The service stopped on the target: its RSTs to the copied SYNs are the target's
    failure, named with where nothing listens, not the session emulation's."""
    on = online_mix(1000)
    tg = [copy(r) for i, r in enumerate(on) if i % 10]  # 100 missing
    daemons = [stats(requests_sent=930, sessions_refused=60, sessions_no_synack=5,
                     target_resets=4)]
    inp = L.LedgerInput({"o": on}, tg, daemons=daemons, target_ports=[80],
                        target_address="10.77.1.20")
    a = L.build(inp).attribution
    got = {b.name: b.requests for b in a.buckets}
    # before send 70: target (refused) 60, session 5, unexplained 5; after send 30: target
    # (reset midway) 4, path 26 -- one target bucket holding both
    assert got == {"target": 64, "session": 5, "path": 26}
    assert a.unexplained == 5
    target = next(b for b in a.buckets if b.name == "target")
    assert "sessions_refused=60" in target.evidence
    assert "nothing listens on 10.77.1.20:80" in target.evidence
    assert "reset by the target midway=4" in target.evidence
    assert a.buckets[0].name == "target"     # the largest cause comes first here


def test_target_error_share_per_endpoint() -> None:
    on = online_mix(400)
    tg = [copy(r, status=500 if r.uri == "/slow" and i % 3 == 0 else 200)
          for i, r in enumerate(on)]
    rep = L.build(L.LedgerInput({"o": on}, tg))
    assert list(rep.target_errors) == ["GET /slow"]
    bad, total = rep.target_errors["GET /slow"]
    assert total == 100 and bad == sum(1 for i in range(400) if i % 4 == 3 and i % 3 == 0)
