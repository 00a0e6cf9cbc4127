"""engine.select (issue 9): the inventory keys, validated by the engine's own rule parser;
the tcpcopy flags they become (none without a selection); the plan's line about them."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from engine.options.tcpcopy import parse_tcpcopy_args, selection
from labctl.errors import InventoryError
from labctl.facts import OperatorFacts
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.up import run as ops
from labctl.up.engine_args import EnginePaths, select_args, select_summary, tcpcopy_argv
from labctl.up.plan import make_plan
from tests.unit.checks_facts import ROOT, healthy
from tests.unit.up_hosts import simulated_host

STAGING = (ROOT / "inventories/staging.yaml").read_text()
ENGINE = "engine: {sample_percent: 100, multiplier: 1, session_timeout: 120, " \
         "keepalive_timeout: 240, memory_mb: 512, datalink: false, connections: 2, " \
         "lonely: true, no_wait: false, max_sessions: 65536}"


def with_select(select: str) -> str:
    """staging.yaml with `select` (YAML lines, indented under engine:) added to engine."""
    assert ENGINE in STAGING
    body = "\n".join("    " + line for line in select.strip("\n").splitlines())
    return STAGING.replace(ENGINE, "engine:\n  sample_percent: 100\n  select:\n" + body)


def inv_with(select: str) -> Inventory:
    return parse_inventory(with_select(select), "inv.yaml")


def error_of(select: str) -> str:
    with pytest.raises(InventoryError) as exc:
        inv_with(select)
    return exc.value.message


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_no_select_is_none_and_tcpcopy_gets_no_new_flag() -> None:
    inv = parse_inventory(STAGING)
    assert inv.engine.select is None
    argv = tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths())
    assert not any(a.startswith(("--allow", "--deny", "--safe", "--on-unparsable",
                                 "--non-http")) for a in argv)


def test_keys_lists_single_strings_and_defaults() -> None:
    s = inv_with("allow_host: a.example\nallow_path: [/api, '~^/v[12]/']\nsafe: true\n"
                 "safe_methods: get,head").engine.select
    assert s is not None
    assert s.allow_host == ["a.example"] and s.allow_path == ["/api", "~^/v[12]/"]
    assert s.safe_methods == ["GET", "HEAD"]
    assert (s.on_unparsable, s.non_http) == ("copy", "copy")
    assert inv_with("safe: true").engine.select.safe_methods == ["GET", "HEAD", "OPTIONS"]


@pytest.mark.parametrize(("select", "field", "needle", "why"), [
    ("allow_path:\n  - /api\n  - '~('", "engine.select.allow_path[1]", "'~('",
     "bad regular expression"),
    ("allow_path: api", "engine.select.allow_path[0]", "allow_path: api", "starts with '/'"),
    ("deny_host: ['a b']", "engine.select.deny_host[0]", "deny_host", "expected a host name"),
    ("allow_header: [User-Agent]", "engine.select.allow_header[0]", "allow_header",
     "NAME:REGEX"),
    ("deny_header: ['X-A:[']", "engine.select.deny_header[0]", "deny_header",
     "bad regular expression"),
    ("allow_method: ['G T']", "engine.select.allow_method[0]", "allow_method", "METHOD"),
    ("safe: true\nsafe_methods: ['G T']", "engine.select.safe_methods", "safe_methods",
     "METHOD"),
    ("on_unparsable: maybe", "engine.select.on_unparsable", "on_unparsable", "'copy' or 'skip'"),
    ("non_http: drop", "engine.select.non_http", "non_http", "'copy' or 'skip'"),
    ("deny_method: [GET]", "engine.select.deny_method", "deny_method", "unknown key"),
    ("safe_methods: [GET]", "engine.select.safe_methods", "safe_methods", "only with safe: true"),
    ("safe: yes please", "engine.select.safe", "safe:", "true or false"),
])
def test_bad_values_name_file_line_and_field(select: str, field: str, needle: str,
                                             why: str) -> None:
    message = error_of(select)
    line = line_of(with_select(select), needle)
    assert f"inv.yaml:{line}: {field}:" in message, message
    assert why in message
    assert "Traceback" not in message


def test_flags_in_a_fixed_order() -> None:
    s = inv_with("""
non_http: skip
deny_header: ['X-Debug:.']
allow_header: ['User-Agent:^curl/']
allow_method: [GET, 'PUT,PATCH']
deny_path: ['~\\.php$']
allow_path: [/api, /static]
deny_host: ['*.internal']
allow_host: [a.example]
safe: true
safe_methods: [GET]
on_unparsable: skip
""").engine.select
    assert s is not None
    assert select_args(s) == [
        "--allow-host", "a.example", "--deny-host", "*.internal", "--allow-path", "/api",
        "--allow-path", "/static", "--deny-path", "~\\.php$", "--allow-method", "GET",
        "--allow-method", "PUT,PATCH", "--allow-header", "User-Agent:^curl/",
        "--deny-header", "X-Debug:.", "--safe", "--safe-methods", "GET",
        "--on-unparsable", "skip", "--non-http", "skip"]


def test_defaults_give_no_flag_and_default_safe_methods_are_not_repeated() -> None:
    s = inv_with("on_unparsable: copy\nnon_http: copy").engine.select
    assert s is not None and select_args(s) == []
    safe = inv_with("safe: true").engine.select
    assert safe is not None and select_args(safe) == ["--safe"]


def test_selection_flags_come_after_the_old_ones_and_before_the_files() -> None:
    inv = inv_with("allow_path: [/api]")
    plain = tcpcopy_argv(parse_inventory(STAGING), inv.hosts.online[0],
                         EnginePaths(key_file="/k"))
    argv = tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths(key_file="/k"))
    assert argv == [*plain[:-2], "--allow-path", "/api", "--key-file", "/k"]


def test_the_engine_accepts_what_the_inventory_accepted() -> None:
    s = inv_with("allow_host: ['*.example.com']\nallow_path: ['~^/v1/']\n"
                 "allow_header: ['X-A:b']\nsafe: true").engine.select
    assert s is not None
    sel = s.selection()
    assert [r.name for r in sel.rules] == ["--allow-host *.example.com",
                                           "--allow-path ~^/v1/", "--allow-header X-A:b"]
    assert sel.safe


def test_summary_in_words() -> None:
    s = inv_with("allow_host: [a.example, '*.b.example']\nallow_path: /api\nsafe: true\n"
                 "deny_path: [/api/admin]").engine.select
    assert s is not None
    assert select_summary(s) == (
        "tcpcopy copies only: host a.example or *.b.example; path /api; safe methods "
        "(GET, HEAD, OPTIONS), never: path /api/admin (unparsable streams: copy, "
        "non-HTTP connections: copy)")
    deny = inv_with("deny_host: b.example").engine.select
    assert deny is not None
    assert select_summary(deny).startswith("tcpcopy copies every request except: host b.example")
    empty = inv_with("non_http: copy").engine.select
    assert empty is not None and "engine.select has no rule" in select_summary(empty)


def test_plan_note_only_with_a_selection() -> None:
    inv = inv_with("allow_host: a.example")
    assert any(n.startswith("tcpcopy copies only: host a.example")
               for n in make_plan(inv, healthy(inv)).notes)
    plain = parse_inventory(STAGING)
    assert not any("tcpcopy copies" in n for n in make_plan(plain, healthy(plain)).notes)


def test_labctl_plan_shows_the_flags_on_the_tcpcopy_command_line() -> None:
    inv = inv_with("allow_host: a.example\nallow_path: ['~^/api/']")
    fakes: dict[str, Any] = {}

    def factory(spec: Any) -> Any:
        return fakes.setdefault(spec.name, simulated_host(spec.name))

    report = ops.plan(inv, ops.UpOptions(factory=factory, operator_facts=OperatorFacts()))
    assert report.plan is not None
    tcpcopy = [c.daemon for c in report.plan.daemons if c.daemon and c.daemon.name == "tcpcopy"]
    assert tcpcopy and all(
        "--allow-host a.example --allow-path '~^/api/'" in shlex.join(d.args) for d in tcpcopy)
    intercept = [c.daemon for c in report.plan.daemons if c.daemon and c.daemon.name ==
                 "intercept"]
    assert intercept and not any("--allow" in " ".join(d.args) for d in intercept)
    assert any(n.startswith("tcpcopy copies only:") for n in report.plan.notes)


def test_tcpcopy_parses_the_argv_into_the_same_selection() -> None:
    inv = inv_with("allow_host: [a.example]\nallow_path: [/api, '~^/v1/']\n"
                   "deny_header: ['X-Debug:.']\nsafe: true\nsafe_methods: [GET, HEAD]\n"
                   "on_unparsable: skip\nnon_http: skip")
    opts = parse_tcpcopy_args(tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths()))
    sel = selection(opts)
    assert inv.engine.select is not None and sel is not None
    want = inv.engine.select.selection()
    assert [r.name for r in sel.rules] == [r.name for r in want.rules]
    assert sel.safe and sel.safe_methods == frozenset({"GET", "HEAD"})
    assert not sel.copy_unparsable and not sel.copy_non_http
    plain = parse_tcpcopy_args(tcpcopy_argv(parse_inventory(STAGING),
                                            inv.hosts.online[0], EnginePaths()))
    assert selection(plain) is None


def test_the_commented_example_in_staging_yaml_is_valid() -> None:
    lines = STAGING.splitlines()
    start = lines.index("#   select:")
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("#     "):
            break
        block.append(line[6:].split("  #", 1)[0].rstrip())
    s = inv_with("\n".join(block)).engine.select
    assert s is not None and s.safe and s.allow_method == ["GET,HEAD"]
    assert select_args(s)[:4] == ["--allow-host", "api.example.com", "--allow-host",
                                  "*.shop.example.com"]
