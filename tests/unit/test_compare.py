"""`labctl compare`'s pure core on synthetic logs (tests/unit/compare_logs.py): identical
versions flag nothing, a candidate with three known faults is flagged exactly there, the noise
reference and the minimums hold flags back, the result is deterministic."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from labctl.compare import document as doc
from labctl.compare import stats
from labctl.compare.endpoints import endpoint_of, normalise_path
from labctl.compare.judge import build
from labctl.compare.stats import (
    bootstrap_percentiles,
    median,
    quantile_interval,
    two_proportion_p,
)
from labctl.compare.types import CompareInput, CompareReport, Thresholds
from tests.unit.compare_logs import CLIENT_POOL, KEYS, Change, Logs, records, synth

#: Fewer resamples than the default keep the many builds below fast; one test uses the default.
FAST = Thresholds(bootstrap=300)
FAULTS = {"items": Change(error_share=0.2), "users": Change(slower_ms=200),
          "lines": Change(size_delta=100)}


def compare(logs: Logs, th: Thresholds = FAST, **kw: object) -> CompareReport:
    inp = CompareInput(records(logs.online), records(logs.baseline), records(logs.candidate),
                       baseline2=records(logs.baseline2) if logs.baseline2 else None,
                       allowed_sources=[CLIENT_POOL],
                       hosts={"online": "on1", "baseline": "blue", "candidate": "green"},
                       **kw)  # type: ignore[arg-type]
    return build(inp, th)


def flagged(r: CompareReport) -> set[tuple[str, str, str]]:
    return {(f.endpoint, f.kind, f.direction) for f in r.flags}


# ---------------------------------------------------------------- endpoints and statistics


@pytest.mark.parametrize(("uri", "path"), [
    ("/api/items/123?x=1", "/api/items/{id}"),
    ("/api/users/0d64cd61-a376-9512-db81-2ade2d49ec80/orders", "/api/users/{id}/orders"),
    ("/blobs/5f2b9c0e8d7a6b5c4d3e2f10", "/blobs/{id}"),
    ("/files/42.json", "/files/{id}.json"),
    ("/v2/deadbeefcafe/x", "/v2/deadbeefcafe/x"),  # hex words without a digit stay
    ("/p%61th/7#frag", "/path/{id}"),
    ("/", "/"),
    (None, "-"),
])
def test_ids_in_path_segments_become_id(uri: str | None, path: str) -> None:
    assert normalise_path(uri) == path


def test_endpoint_is_method_and_normalised_path() -> None:
    assert endpoint_of("POST", "/cart/9?a=b") == "POST /cart/{id}"
    assert endpoint_of(None, "/x") == "- /x"


def test_bootstrap_is_seeded_and_paired() -> None:
    a = [float(i) for i in range(200)]
    b = [v + 10 for v in a]
    one = bootstrap_percentiles([a, b], [50.0], 200, "7:ep")
    assert one == bootstrap_percentiles([a, b], [50.0], 200, "7:ep")
    assert one != bootstrap_percentiles([a, b], [50.0], 200, "8:ep")
    # paired: every resample keeps the +10 between the columns exactly
    assert {y - x for x, y in zip(one[0][0], one[1][0])} == {10.0}
    lo, hi = quantile_interval(one[0][0], 0.05)
    assert lo < median(a) < hi  # type: ignore[operator]


def test_a_large_bootstrap_is_subsampled_deterministically(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "MAX_BOOTSTRAP_ROWS", 100)
    col = [float(i % 97) for i in range(1000)]
    one = bootstrap_percentiles([col], [50.0, 99.0], 150, "s")
    assert one == bootstrap_percentiles([col], [50.0, 99.0], 150, "s")
    assert len(one[0][0]) == 150 and all(0 <= v <= 96 for v in one[0][1])


def test_two_proportion_test() -> None:
    assert two_proportion_p(0, 100, 0, 100) == 1.0
    assert two_proportion_p(20, 100, 0, 100) < 1e-4
    assert two_proportion_p(3, 100, 2, 100) > 0.5


# ---------------------------------------------------------------- the scenarios


@pytest.mark.parametrize("seed", range(10))
def test_identical_versions_flag_nothing(seed: int) -> None:
    r = compare(synth(seed))
    assert r.flags == [], [f.summary for f in r.flags]
    assert r.verdict.passed and not r.verdict.inconclusive
    assert all(e.judged for e in r.endpoints) and len(r.endpoints) == len(KEYS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_faults_are_flagged_exactly_with_direction(seed: int) -> None:
    r = compare(synth(seed, changes=FAULTS))
    assert flagged(r) == {(KEYS["items"], "errors", "worse"),
                          (KEYS["users"], "latency", "worse"),
                          (KEYS["lines"], "body_size", "changed")}
    assert not r.verdict.passed and len(r.verdict.reasons) == 3
    by_kind = {f.kind: f for f in r.flags}
    assert by_kind["errors"].summary.startswith("5xx ") and by_kind["errors"].shift > 0.1
    assert 180 < by_kind["latency"].shift < 220 and by_kind["latency"].low > 150  # type: ignore
    assert "ms" in by_kind["latency"].summary and "CI" in by_kind["latency"].summary
    assert "body size differs in" in by_kind["body_size"].summary
    assert "+100 B" in by_kind["body_size"].summary
    for f in r.flags:  # examples are requests of the flagged endpoint
        assert f.examples and all(endpoint_of(f.endpoint.split()[0], u) == f.endpoint
                                  for u in f.examples)


def test_default_thresholds_flag_the_same() -> None:
    r = compare(synth(5, changes=FAULTS), Thresholds())
    assert {k for _, k, _ in flagged(r)} == {"errors", "latency", "body_size"}


def test_a_faster_candidate_is_flagged_better_and_passes() -> None:
    r = compare(synth(3, online={"search": Change()}, changes={"search": Change(slower_ms=-60)}))
    assert flagged(r) == {(KEYS["search"], "latency", "better")}
    assert r.verdict.passed and r.flags[0].regression is False


def test_a_changed_status_is_flagged() -> None:
    logs = synth(4)
    cand = logs.candidate.replace('/api/clock HTTP/1.1" 200', '/api/clock HTTP/1.1" 404')
    r = compare(Logs(logs.online, logs.baseline, cand))
    kinds = {(e, k) for e, k, _ in flagged(r)}
    assert (KEYS["clock"], "status") in kinds and "200 -> 404" in r.flags[0].summary


def test_a_shift_within_the_online_baseline_noise_is_not_flagged() -> None:
    """The lab answers /api/search 60 ms slower than online: a candidate 50 ms slower than
    the baseline is within that noise (60 + 20 ms minimum), 100 ms slower is not."""
    lab_slower = {"search": Change(slower_ms=-60)}
    within = compare(synth(6, online=lab_slower, changes={"search": Change(slower_ms=50)}))
    assert within.flags == []
    beyond = compare(synth(6, online=lab_slower, changes={"search": Change(slower_ms=100)}))
    assert flagged(beyond) == {(KEYS["search"], "latency", "worse")}


def test_two_baselines_are_the_noise_reference() -> None:
    r = compare(synth(7, baseline2=True))
    assert r.noise == "baseline vs baseline2" and r.flags == []
    assert set(r.endpoints[0].sides) == {"online", "baseline", "candidate", "baseline2"}
    r = compare(synth(7, baseline2=True, changes=FAULTS))
    assert {k for _, k, _ in flagged(r)} == {"errors", "latency", "body_size"}


def test_too_few_requests_are_not_judged_and_nothing_judged_is_inconclusive() -> None:
    r = compare(synth(8, requests=60, changes=FAULTS))
    assert r.flags == [] and not any(e.judged for e in r.endpoints)
    assert r.verdict.inconclusive and not r.verdict.passed
    assert "compare.min_requests" in r.verdict.reasons[0]
    r = compare(synth(8, requests=60, changes=FAULTS), Thresholds(min_requests=5,
                                                                  bootstrap=300))
    assert not r.verdict.inconclusive


def test_foreign_requests_and_unmatched_copies_are_counted_not_compared() -> None:
    logs = synth(9, requests=600)
    extra = '10.1.2.3 [2027-01-15T08:00:00.000+00:00] "GET /health HTTP/1.1" 200 2 80 "-" ' \
            '0.001 9 1 "lb" "shop.example"\n'
    r = compare(Logs(logs.online, logs.baseline + extra * 3, logs.candidate))
    assert r.foreign["baseline"] == 3 and r.foreign["candidate"] == 0
    assert any("outside the client pool" in n for n in r.notes)


def test_logs_without_request_time_compare_everything_but_latency() -> None:
    logs = synth(10, changes=FAULTS)
    strip = [dataclasses.replace(r, request_time=None) for r in records(logs.baseline)]
    r = build(CompareInput(records(logs.online), strip, records(logs.candidate),
                           allowed_sources=[CLIENT_POOL]), FAST)
    assert {k for _, k, _ in flagged(r)} == {"errors", "body_size"}
    assert "no $request_time in the baseline log(s): latency is not compared (add " \
           "$request_time to the log_format)" in r.notes
    assert r.endpoints[0].sides["baseline"].p50_ms.value is None


def test_same_input_same_report() -> None:
    logs = synth(11, changes=FAULTS)
    assert doc.to_json(compare(logs)) == doc.to_json(compare(logs))


# ---------------------------------------------------------------- documents


def test_report_files(tmp_path: Path) -> None:
    r = compare(synth(12, changes=FAULTS))
    written = doc.write_report(r, tmp_path / "out")
    assert [p.name for p in written] == ["report.json", "report.md"]
    data = json.loads(written[0].read_text())
    assert data["schema"] == "labctl.compare/1" and data["verdict"]["passed"] is False
    assert {f["kind"] for f in data["flags"]} == {"errors", "latency", "body_size"}
    ep = data["endpoints"][0]
    assert set(ep["sides"]["baseline"]["p90_ms"]) == {"value", "low", "high"}
    md = written[1].read_text()
    assert md.startswith("# labctl compare: REGRESSION")
    assert f"**{KEYS['users']}** (latency, regression)" in md and "  - `/api/users/" in md


def test_report_dir_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception) as exc:
        doc.write_report(compare(synth(13, requests=300)), blocker / "sub")
    assert "cannot write the compare report" in str(exc.value)
