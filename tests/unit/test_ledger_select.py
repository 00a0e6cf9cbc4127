"""verify with engine.select (issue 9): only what the selection copies is expected; filtered
requests are not losses; a rule the log cannot evaluate gives INCONCLUSIVE, never PASS."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from labctl.cli.render import verify as rv
from labctl.inventory.models import Select
from labctl.verify import ledger as L
from labctl.verify import logparse as lp
from labctl.verify import selection as vs
from labctl.verify.logparse import LogRecord
from tests.unit.test_render import text
from tests.unit.test_select_inventory import inv_with

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
POOL = ["10.79.1.0/24"]


def logs(fmt: str = "labctl") -> tuple[list[LogRecord], list[LogRecord]]:
    f = lp.LogFormat(fmt)
    on = lp.parse_text((LOGS / "select-online.log").read_text(), f)
    tg = lp.parse_text((LOGS / "select-target.log").read_text(), f)
    assert on.malformed == 0 and tg.malformed == 0
    return on.records, tg.records


def selection(variables: tuple[str, ...] = tuple(lp.LogFormat("labctl").variables),
              **keys: object) -> vs.LogSelection:
    return vs.LogSelection(Select.model_validate(keys), variables, "logs.online.format")


def ledger(on: list[LogRecord], tg: list[LogRecord], sel: vs.LogSelection | None,
           **kw: object) -> L.LedgerReport:
    return L.build(L.LedgerInput({"online": on}, tg, allowed_sources=POOL, selection=sel,
                                 **kw))  # type: ignore[arg-type]


def test_log_records_carry_host_and_logged_headers() -> None:
    on, _ = logs()
    assert on[0].host == "a.example" and on[1].host == "b.example"
    assert ("user-agent", "labctl-traffic/1") in on[0].headers
    req = vs.request_of(on[0])
    assert req.host == "a.example" and req.path == "/api/items" and req.method == "GET"
    custom = lp.LogFormat('$remote_addr "$request" $status "$http_host" "$http_x_api_key"')
    rec = custom.parse_line('1.2.3.4 "GET /x?a=1 HTTP/1.1" 200 "A.Example:8080" "k1"')
    assert rec.host == "A.Example:8080" and ("x-api-key", "k1") in rec.headers
    assert vs.request_of(rec).host == "a.example"


def test_old_labctl_lines_still_parse_without_a_host() -> None:
    old = lp.LogFormat("labctl").parse_line(
        '127.0.0.1 [2026-11-27T07:32:25+00:00] "GET / HTTP/1.1" 200 6 79 "-" 0.000 1 1 '
        '"curl/7.88.1"')
    assert old.uri == "/" and old.host is None
    res = lp.parse_text((LOGS / "labctl.log").read_text(), lp.LogFormat("labctl"))
    assert len(res.records) == 13 and res.malformed == 0


def test_expected_set_is_the_selected_subset() -> None:
    on, tg = logs()
    rep = ledger(on, tg, selection(allow_host=["a.example"], allow_path=["/api"]))
    s = rep.selection
    assert s is not None
    assert rep.online_requests == 40 and (s.selected, s.filtered) == (12, 28)
    assert s.filtered_by_rule == {"--allow-host (none matched)": 20,
                                  "--allow-path (none matched)": 8}
    assert rep.expected_requests == 12 and rep.target_matched == 12
    assert rep.copy_ratio == 1.0 and rep.loss_pct == 0.0 and rep.verdict.passed
    assert rep.notes[0].startswith("selected 12 of 40 online requests (28 filtered by the "
                                   "selection: --allow-host a.example --allow-path /api)")


def test_without_the_selection_the_same_logs_fail() -> None:
    on, tg = logs()
    rep = ledger(on, tg, None)
    assert rep.selection is None and rep.expected_requests == 40
    assert not rep.verdict.passed and not rep.verdict.inconclusive


def test_loss_and_endpoints_are_computed_on_the_selected_subset() -> None:
    on, tg = logs()
    lost = [r for r in tg if not (r.method == "PUT" and r.uri == "/api/items/14")]
    rep = ledger(on, lost, selection(allow_host=["a.example"], allow_path=["/api"]))
    assert rep.target_matched == 11 and rep.attribution.missing == 1
    assert round(rep.loss_pct, 3) == round(100 / 12, 3)
    assert [e.endpoint for e in rep.worst_endpoints] == ["PUT /api/items/14"]
    assert sum(rep.status_online.values()) == 12         # status mix: like for like
    assert not rep.verdict.passed and not rep.verdict.inconclusive


def test_safe_selection_and_the_rule_that_filtered() -> None:
    on, _ = logs()
    safe = [r for r in on if r.method == "GET"]
    copies = [dataclasses.replace(r, remote_addr="10.79.1.9", time=(r.time or 0) + 0.1)
              for r in safe]
    rep = ledger(on, copies, selection(safe=True))
    assert rep.selection is not None and rep.selection.filtered_by_rule == {"--safe": 16}
    assert rep.verdict.passed and rep.expected_requests == 24


def test_a_copy_of_a_filtered_request_is_a_reason() -> None:
    on, tg = logs()
    static = next(r for r in on if r.uri == "/static/app.js")
    wrong = dataclasses.replace(static, remote_addr="10.79.1.7", time=(static.time or 0) + 0.1)
    rep = ledger(on, [*tg, wrong], selection(allow_host=["a.example"], allow_path=["/api"]))
    assert rep.selection is not None and rep.selection.target_filtered == 1
    assert not rep.verdict.passed
    assert any("ones the selection filters" in r for r in rep.verdict.reasons)


def test_host_rule_on_a_log_without_host_is_inconclusive() -> None:
    on, tg = logs()
    bare = [dataclasses.replace(r, host=None, headers=()) for r in on]
    sel = selection(lp.LogFormat("combined").variables, allow_host=["a.example"])
    rep = ledger(bare, tg, sel)
    assert not rep.verdict.passed and rep.verdict.inconclusive
    assert "--allow-host a.example needs $host or $http_host in logs.online.format" in \
        rep.verdict.reasons[0]
    assert "INCONCLUSIVE" in text(rv.verdict_text(rep))


def test_header_rule_needs_its_http_variable() -> None:
    on, tg = logs()
    ok = ledger(on, tg, selection(allow_header=["User-Agent:^labctl-"], allow_host="a.example",
                                  allow_path="/api"))
    assert ok.verdict.passed and ok.selection is not None and ok.selection.problems == []
    rep = ledger(on, tg, selection(deny_header=["X-Debug:1"]))
    assert rep.verdict.inconclusive
    assert "--deny-header X-Debug:1 needs $http_x_debug" in rep.verdict.reasons[0]


def test_lines_of_an_older_format_without_host_are_unjudged() -> None:
    on, tg = logs()
    mixed = [dataclasses.replace(r, host=None) if i < 3 else r for i, r in enumerate(on)]
    rep = ledger(mixed, tg, selection(allow_host=["a.example"], allow_path=["/api"]))
    assert rep.selection is not None and rep.selection.unjudged == 3
    assert rep.verdict.inconclusive and "3 online log lines carry no host" in \
        rep.verdict.reasons[0]


def test_engine_counters_beside_the_logs() -> None:
    on, tg = logs()
    tc = L.DaemonStats("online", "tcpcopy", "running",
                       {"requests_selected": 12, "requests_skipped": 28, "requests_sent": 12})
    rep = ledger(on, tg, selection(allow_host=["a.example"], allow_path=["/api"]),
                 daemons=[tc])
    s = rep.selection
    assert s is not None and (s.engine_selected, s.engine_skipped) == (12, 28)
    assert any("requests selected 12, skipped 28 (the log says 12 and 28)" in n
               for n in rep.notes)


def test_rendered_summary_and_json() -> None:
    on, tg = logs()
    rep = ledger(on, tg, selection(allow_host=["a.example"], allow_path=["/api"]))
    out = text(rv.ledger_view(rep))
    assert "selected 12 of 40 online requests (28 filtered by the selection)" in out
    assert "--allow-host (none matched): 20" in out and "PASS" in out
    doc = json.loads(rv.verify_json(rep))
    assert doc["selection"]["filtered"] == 28 and doc["selection"]["selected"] == 12
    assert doc["verdict"]["inconclusive"] is False
    assert json.loads(rv.verify_json(ledger(on, tg, None)))["selection"] is None


def test_for_inventory_reads_the_online_log_format() -> None:
    inv = inv_with("allow_host: a.example")
    sel = vs.for_inventory(inv)         # staging logs are `combined`: no host
    assert sel is not None and sel.problems and "(combined)" in sel.problems[0]
    assert vs.for_inventory(inv_with("allow_path: /api").model_copy(
        update={"engine": inv.engine.model_copy(update={"select": None})})) is None
    ok = vs.for_inventory(inv_with("allow_path: /api"))
    assert ok is not None and ok.problems == []
