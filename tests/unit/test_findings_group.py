"""labctl.up.findings: preflight findings grouped per check and subject (issue 12), and host
names written compactly. Pure logic over constructed findings."""

from __future__ import annotations

import pytest

from labctl.model import Finding, Severity
from labctl.up.findings import group_findings, host_list, short_refs

E, W, N = Severity.ERROR, Severity.WARN, Severity.INFO


def onlines(n: int) -> list[str]:
    return [f"online{i}" for i in range(1, n + 1)]


@pytest.mark.parametrize("hosts, expected", [
    (["target"], "target"),
    (["online1", "online2"], "online1, online2"),
    (onlines(16), "online[1-16]"),
    (["online", *[f"online{i}" for i in range(2, 17)]], "online, online[2-16]"),
    (["web-01", "web-02", "web-03", "web-07", "db1"], "web-[01-03,07], db1"),
    (["a1", "b", "a3", "a2", "a9"], "a[1-3,9], b"),
    (["assistant", *onlines(3), "target"], "assistant, online[1-3], target"),
])
def test_host_list_brackets_numbered_runs(hosts: list[str], expected: str) -> None:
    assert host_list(hosts) == expected


def test_one_check_on_every_online_host_is_one_group_listing_them() -> None:
    findings = [Finding("service.unreachable", E, h, f"cannot connect to {t}:80 from here", "x")
                for h in onlines(16) for t in ("10.0.0.5", "10.0.0.6")]
    [group] = group_findings(findings)
    assert group.hosts == tuple(onlines(16)) and group.count == 32
    assert group.message == "cannot connect to 10.0.0.5:80, 10.0.0.6:80 from here"
    assert group.where == "online[1-16] (16 hosts)"


def test_addresses_of_one_host_are_listed_in_one_message() -> None:
    """route.operator on one target for two operator addresses; route.inventory_host for three
    hosts inside the client network: one group each, the addresses in the message."""
    findings = [
        Finding("route.operator", E, "target", f"client network 10.0.0.0/16 contains the "
                f"operator's address 10.0.0.{i}: the route would cut your SSH session", "h",
                refusal=True) for i in (1, 7)
    ] + [
        Finding("route.inventory_host", E, "target", f"client network 10.0.0.0/16 contains "
                f"inventory host online{i} (10.0.0.{10 + i})", "h2", refusal=True)
        for i in (1, 2, 3)
    ]
    groups = group_findings(findings)
    assert [g.message for g in groups] == [
        "client network 10.0.0.0/16 contains the operator's address 10.0.0.1, 10.0.0.7: the "
        "route would cut your SSH session",
        "client network 10.0.0.0/16 contains inventory host online1 (10.0.0.11), online2 "
        "(10.0.0.12), online3 (10.0.0.13)"]
    assert all(g.refusal and g.hosts == ("target",) for g in groups)


def test_values_of_different_hosts_are_never_merged() -> None:
    """conntrack counts differ per host: merging them would lose which host has which."""
    findings = [Finding("conntrack.usage", W, f"online{i}",
                        f"conntrack table {i}00/1000 ({i}0%) is above 5%", "fix")
                for i in (1, 2, 3)]
    groups = group_findings(findings)
    assert [(g.hosts, g.message) for g in groups] == [
        ((f"online{i}",), f"conntrack table {i}00/1000 ({i}0%) is above 5%") for i in (1, 2, 3)]


@pytest.mark.parametrize("messages", [
    ("here a b c d e f g", "here a x c y e f g"),   # two places differ
    ("the one two three four six end", "the one seven eight nine ten six end"),  # too long
    ("rp_filter=1", "rp_filter=2"),             # too little in common
    ("pool p contains host h (1.2.3.4) now", "pool p contains host h2 (5.6.7.8 now"),
])
def test_messages_that_do_not_differ_in_one_run_of_words_stay_apart(
        messages: tuple[str, str]) -> None:
    groups = group_findings([Finding("x.y", W, "h", m, "") for m in messages])
    assert sorted(g.message for g in groups) == sorted(messages)


def test_severity_refusal_and_hint_separate_groups_and_order_them() -> None:
    same = "the same words on every host here"
    findings = [Finding("c.d", N, "h1", same), Finding("c.d", W, "h2", same),
                Finding("c.d", W, "h3", same, hint="other"), Finding("a.b", E, "h4", same),
                Finding("a.b", E, "h5", same, refusal=True), Finding("c.d", W, "h6", same)]
    groups = group_findings(findings)
    assert [(g.severity, g.refusal, g.hosts) for g in groups] == [
        (E, True, ("h5",)), (E, False, ("h4",)), (W, False, ("h2", "h6")),
        (W, False, ("h3",)), (N, False, ("h1",))]
    assert sum(g.count for g in groups) == len(findings)


def test_short_refs_name_each_check_once_with_its_hosts() -> None:
    findings = [Finding("service.unreachable", E, h, "m") for h in reversed(onlines(16))]
    findings.append(Finding("route.operator", E, "target", "m", refusal=True))
    findings += [Finding("python.missing", E, h, "m") for h in ("target", "assistant")]
    assert short_refs(findings) == ("service.unreachable@online[1-16], route.operator@target, "
                                    "python.missing@assistant,target")
