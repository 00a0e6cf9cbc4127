"""Selection rules for per-request copying (engine/http/select.py): parsing, decisions,
counters."""

from __future__ import annotations

from typing import Optional

import pytest

from engine.http.framer import (
    BAD_CHUNK,
    HTTP2_PREFACE,
    NOT_HTTP,
    UPGRADE,
    Opaque,
    Request,
    RequestFramer,
)
from engine.http.select import Decision, RuleError, Selection, parse_rule


def req(method: str = "GET", target: str = "/", host: Optional[str] = "example.com",
        *headers: str) -> Request:
    lines = [f"{method} {target} HTTP/1.1", *([f"Host: {host}"] if host is not None else []),
             *headers]
    (piece,) = RequestFramer().feed(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(piece.unit, Request)
    return piece.unit


def sel(*flags: str, **options: object) -> Selection:
    pairs = [(flag, value) for flag, value in (f.split(" ", 1) for f in flags)]
    return Selection.from_flags(pairs, **options)  # type: ignore[arg-type]


def test_no_rule_copies_everything() -> None:
    selection = sel()
    assert selection.selects_everything
    assert selection.decide(req("DELETE", "/x")) == Decision(True, "default")
    assert selection.counters() == {"default": {
        "selected": 1, "skipped": 0, "unparsable": 0, "non_http": 0}}


def test_allow_path_prefix_selects_per_request() -> None:
    selection = sel("--allow-path /api")
    assert selection.decide(req(target="/api/v1?x")) == Decision(True, "--allow-path /api")
    assert selection.decide(req(target="/apix")).copy      # a prefix, as documented
    assert selection.decide(req(target="/static/a.js")) == Decision(
        False, "--allow-path (none matched)")
    assert selection.decide(req(target="http://h/api/z")).copy        # absolute form
    assert selection.counters()["--allow-path /api"]["selected"] == 3


def test_path_regex_searches_path_and_query() -> None:
    selection = sel("--deny-path ~[?&]debug=1", "--allow-path ~^/api/v[12]/")
    assert selection.decide(req(target="/api/v1/u")).copy
    assert not selection.decide(req(target="/api/v3/u")).copy
    assert selection.decide(req(target="/api/v1/u?debug=1")) == Decision(
        False, "--deny-path ~[?&]debug=1")


def test_hosts_exact_and_wildcard_case_insensitive_port_ignored() -> None:
    selection = sel("--allow-host Example.COM", "--allow-host *.api.example.com")
    assert selection.decide(req(host="EXAMPLE.com:8080")).copy
    assert selection.decide(req(host="eu.api.example.com")).copy
    assert selection.decide(req(host="a.b.api.example.com")).copy
    assert not selection.decide(req(host="api.example.com")).copy     # not the bare domain
    assert not selection.decide(req(host="notexample.com")).copy
    assert not selection.decide(req(host=None)).copy                  # no Host: no host match


def test_deny_wins_over_allow() -> None:
    selection = sel("--allow-host *.example.com", "--deny-host admin.example.com")
    assert selection.decide(req(host="www.example.com")).copy
    assert selection.decide(req(host="admin.example.com")) == Decision(
        False, "--deny-host admin.example.com")


def test_allow_kinds_combine_with_and_rules_of_a_kind_with_or() -> None:
    selection = sel("--allow-path /api", "--allow-path /v2", "--allow-method GET,HEAD",
                    "--allow-header User-Agent:^curl/")
    ua = "User-Agent: curl/8.0"
    assert selection.decide(req("GET", "/v2/x", "h", ua)) == Decision(True, "--allow-path /v2")
    assert selection.decide(req("POST", "/api", "h", ua)) == Decision(
        False, "--allow-method (none matched)")
    assert selection.decide(req("HEAD", "/api", "h", "User-Agent: wget")) == Decision(
        False, "--allow-header (none matched)")
    assert selection.decide(req("GET", "/", "h", ua)) == Decision(
        False, "--allow-path (none matched)")


def test_header_rules_match_any_value_of_the_field_any_case() -> None:
    selection = sel("--deny-header x-canary:^1$")
    assert selection.decide(req("GET", "/", "h", "X-Canary: 0", "X-CANARY: 1")) == Decision(
        False, "--deny-header x-canary:^1$")
    assert selection.decide(req("GET", "/", "h", "X-Canary: 10")).copy


def test_safe_mode() -> None:
    selection = sel(safe=True)
    assert [selection.decide(req(m)).copy for m in ("GET", "HEAD", "OPTIONS", "POST", "PUT")] == [
        True, True, True, False, False]
    assert selection.counters()["--safe"]["skipped"] == 2
    custom = sel("--allow-path /api", safe=True, safe_methods=("get", "PROPFIND"))
    assert custom.decide(req("PROPFIND", "/api")).copy
    assert not custom.decide(req("HEAD", "/api")).copy
    assert not custom.decide(req("GET", "/")).copy


def test_opaque_decisions_are_counted() -> None:
    selection = sel("--allow-path /api", on_unparsable="skip")
    assert selection.decide_opaque(Opaque(0, NOT_HTTP)) == Decision(True, "--non-http copy")
    assert selection.decide_opaque(Opaque(0, HTTP2_PREFACE)).rule == "--non-http copy"
    assert selection.decide_opaque(Opaque(90, BAD_CHUNK)) == Decision(
        False, "--on-unparsable skip")
    up = req("GET", "/api", "h", "Upgrade: websocket")
    tunnel = selection.decide(up)
    assert selection.decide_opaque(Opaque(40, UPGRADE, up), tunnel) == tunnel
    assert selection.counters() == {
        "--allow-path /api": {"selected": 1, "skipped": 0, "unparsable": 0, "non_http": 0},
        "--non-http copy": {"selected": 0, "skipped": 0, "unparsable": 0, "non_http": 2},
        "--on-unparsable skip": {"selected": 0, "skipped": 0, "unparsable": 1, "non_http": 0},
    }
    assert sel(non_http="skip").decide_opaque(Opaque(0, NOT_HTTP)).copy is False


def test_every_rule_shows_in_the_counters_from_the_start() -> None:
    assert set(sel("--allow-host a", "--deny-path /b").counters()) == {
        "--allow-host a", "--deny-path /b"}


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--allow-host", "", "host name"),
    ("--deny-host", "*.", "host name"),
    ("--allow-host", "a*.b", "host name"),
    ("--allow-path", "api", "starts with '/'"),
    ("--allow-path", "~(", "bad regular expression"),
    ("--deny-path", "~", "empty regular expression"),
    ("--allow-header", "X-Canary", "NAME:REGEX"),
    ("--allow-header", ":x", "NAME:REGEX"),
    ("--deny-header", "X-A:[", "bad regular expression"),
    ("--allow-method", "G T", "METHOD"),
    ("--allow-method", ",", "METHOD"),
    ("--deny-method", "GET", "not a selection flag"),
    ("--allow-port", "80", "not a selection flag"),
])
def test_bad_rules_name_the_flag_and_value(flag: str, value: str, why: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(flag, value)
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith(f"{flag} {value!r}: ") and why in str(err.value)


def test_bad_options() -> None:
    with pytest.raises(RuleError, match="--on-unparsable 'drop': expected copy or skip"):
        sel(on_unparsable="drop")
    with pytest.raises(RuleError, match="--non-http"):
        sel(non_http="")
    with pytest.raises(RuleError, match="--safe-methods"):
        sel(safe=True, safe_methods=())
