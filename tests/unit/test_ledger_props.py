"""Property tests: the ledger accounts for every missing copy, whatever the counters say.

Counters come from stats files on remote hosts, so they may be anything: absent, zero, huge,
inconsistent with the logs (a daemon restarted), even negative (a corrupt file). Whatever they
are, the attribution buckets plus `unexplained` must sum to the missing count exactly, and no
figure may be negative.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.verify import ledger as L
from labctl.verify.logparse import LogRecord

T0 = 1_800_000_000.0
COUNTERS = ("kernel_drops", "malformed", "sessions_shed", "sessions_no_synack",
            "sessions_no_intercept", "sessions_timeout", "send_errors", "requests_sent")

counter_value = st.one_of(st.integers(0, 10_000), st.integers(-1_000, 10**9))
counters = st.dictionaries(st.sampled_from(COUNTERS), counter_value)
daemon = st.builds(lambda tool, c: L.DaemonStats("h", tool, "running", c),
                   st.sampled_from(["tcpcopy", "tcpcopy", "intercept"]), counters)
intercept = st.builds(lambda n: L.DaemonStats("a", "intercept", "running",
                                              {"resp_unrouted": n}), counter_value)
daemons = st.lists(st.one_of(daemon, intercept), max_size=4)


def _check(a: L.Attribution, missing: int) -> None:
    assert a.missing == missing
    assert a.unexplained >= 0
    assert all(b.requests > 0 for b in a.buckets), a.buckets
    assert sum(b.requests for b in a.buckets) + a.unexplained == missing, a
    names = [b.name for b in a.buckets]
    assert len(names) == len(set(names)), names  # each bucket at most once
    assert set(names) <= {"capture", "session", "target", "path"}


@settings(max_examples=400, deadline=None)
@given(missing=st.integers(0, 100_000), ds=daemons, matched=st.integers(0, 100_000),
       errors=st.integers(0, 100_000), slow=st.booleans())
def test_attribute_always_sums_to_missing(missing: int, ds: list[L.DaemonStats], matched: int,
                                          errors: int, slow: bool) -> None:
    _check(L.attribute(missing, ds, matched, errors, slow), missing)


# A request is (uri index, body length or None, status); copies are a random subset of the
# online requests (each 0, 1 or 2 times) plus a few requests online never saw.
request = st.tuples(st.integers(0, 3), st.sampled_from([None, 0, 10, 1024]),
                    st.sampled_from([200, 200, 404, 499, 503]))


def _rec(i: int, req: tuple[int, int | None, int], addr: str, lag: float = 0.0) -> LogRecord:
    uri, body, status = req
    return LogRecord(T0 + i * 0.01 + lag, addr, "POST" if body else "GET", f"/u{uri}", status,
                     10, 100, body, 0.001 * (i % 7), i // 3, None)


@settings(max_examples=200, deadline=None)
@given(online=st.lists(request, max_size=60), copies=st.lists(st.integers(0, 2), max_size=60),
       extra=st.lists(request, max_size=5), ds=daemons,
       sample=st.sampled_from([100.0, 50.0, 30.0]), mult=st.integers(1, 3))
def test_build_accounts_for_every_missing_copy(online: list[tuple[int, int | None, int]],
                                                copies: list[int],
                                                extra: list[tuple[int, int | None, int]],
                                                ds: list[L.DaemonStats], sample: float,
                                                mult: int) -> None:
    on = [_rec(i, r, "10.78.1.10") for i, r in enumerate(online)]
    tg = [_rec(i, r, "10.79.1.5", lag=0.1 * (k + 1))
          for i, (r, n) in enumerate(zip(online, copies)) for k in range(n)]
    tg += [_rec(1000 + i, (9, r[1], r[2]), "10.79.1.6") for i, r in enumerate(extra)]
    rep = L.build(L.LedgerInput({"o": on}, tg, sample_percent=sample, multiplier=mult,
                                allowed_sources=["10.79.1.0/24"], daemons=ds))
    expected = len(on) * sample / 100.0 * mult
    assert rep.attribution.missing == max(0, round(expected - rep.target_matched))
    _check(rep.attribution, rep.attribution.missing)
    assert 0 <= rep.target_matched <= len(tg)
    assert rep.target_excess >= 0 and rep.loss_pct >= 0 and rep.excess_pct >= 0
    assert rep.target_matched + rep.target_excess + rep.leaks == rep.target_requests
