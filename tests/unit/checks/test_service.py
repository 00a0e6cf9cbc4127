"""The service family (labctl.up.checks.service): the fake client pool, the copied service and
target port, the intercept port, the datalink next hop, OUTPUT rules that refuse the copies."""

from __future__ import annotations

import dataclasses

import pytest

from labctl.facts.iptables import parse_iptables_save
from labctl.facts.sockets import Listener
from labctl.inventory.models import Inventory
from labctl.model import Finding, Severity
from labctl.up.checks import run_checks
from tests.unit.checks.fired import ids
from tests.unit.checks_facts import (
    edited,
    healthy,
    inventory,
    operator,
    two_server,
    with_host,
)
from tests.unit.test_datalink import datalink_inventory, with_macs


@pytest.mark.parametrize(
    ("pool", "real", "expected"),
    [
        ("10.1.2.x", "10.0.0.0/8", {"pool.real_clients", "pool.unrouted"}),
        ("192.168.44.137", "10.0.0.0/8", {"pool.inventory_host", "pool.unrouted"}),
        ("192.168.51.x", "10.0.0.0/8", {"pool.unrouted"}),
    ],
)
def test_pool_checks(pool: str, real: str, expected: set[str]) -> None:
    inv = edited("staging.yaml", "pool: [192.168.50.x]", f"pool: [{pool}]")
    found = [f for f in run_checks(inv, healthy(inv), operator()) if f.id.startswith("pool.")]
    assert ids(found) == expected


@pytest.mark.parametrize("port", [22])
def test_two_server_drop_rule_on_ssh_port_is_refused(port: int) -> None:
    inv = two_server(port)
    facts = healthy(inv)
    facts["online1"] = dataclasses.replace(facts["online1"], tcp={f"192.168.44.137:{port}": True})
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "drop.ssh_port"]
    ids(found)
    assert found and found[0].refusal


def test_service_unreachable_from_online() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "online1", tcp={"192.168.44.137:80": False})
    assert "service.unreachable" in ids(run_checks(inv, facts, operator()))


def test_intercept_port_busy() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "assistant", listeners=(Listener("*", 36524),))
    assert "intercept.port_busy" in ids(run_checks(inv, facts, operator()))
    other = with_host(healthy(inv), "assistant", listeners=(Listener("127.0.0.1", 36524),))
    assert "intercept.port_busy" not in ids(run_checks(inv, other, operator()))


def test_datalink_mac_unknown() -> None:
    inv = datalink_inventory()
    assert "datalink.mac_unknown" not in ids(run_checks(inv, with_macs(healthy(inv)), operator()))
    routed = with_macs(healthy(inv), on_link=False)  # via a gateway missing from the ARP table
    found = [f for f in run_checks(inv, routed, operator()) if f.id == "datalink.mac_unknown"]
    ids(found)
    assert len(found) == 1 and found[0].severity is Severity.ERROR and found[0].host == "online1"
    assert found[0].hint and "ping 192.168.44.254 once from online1" in found[0].hint
    off = inventory()  # datalink: false needs no next hop at all
    assert "datalink.mac_unknown" not in ids(run_checks(off, routed, operator()))


def test_nothing_listening_on_a_copied_target_port_is_a_warning() -> None:
    """A typo in target_port, or the service not started: the target's own socket table says
    so before `up` (a warning: the service may start later)."""
    inv = inventory()
    facts = with_host(healthy(inv), "target", listeners=(Listener("0.0.0.0", 22),
                                                        Listener("127.0.0.1", 80)))
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "target.not_listening"]
    ids(found)
    assert len(found) == 1 and found[0].severity == Severity.WARN and found[0].host == "target"
    assert "192.168.44.137:80" in found[0].message
    assert "target.not_listening" not in ids(run_checks(inv, healthy(inv), operator()))
    # online's connect probe fails too, for the same reason: one warning, not an error (the
    # service may start later; --strict makes it block)
    refused = with_host(facts, "online1", tcp={"192.168.44.137:80": False})
    got = ids(run_checks(inv, refused, operator()))
    assert "target.not_listening" in got and "service.unreachable" not in got


SAVE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:EGRESS - [0:0]
{rules}
COMMIT
"""


def output_findings(inv: Inventory, rules: str) -> list[Finding]:
    facts = with_host(healthy(inv), "online1",
                      iptables=parse_iptables_save(SAVE.format(rules=rules)))
    return [f for f in run_checks(inv, facts, operator()) if f.id == "online.output_refuses"]


@pytest.mark.parametrize("rule, why", [
    ("-A OUTPUT -p tcp -m tcp --dport 80 -j DROP", "every copy"),
    ("-A OUTPUT -d 192.168.44.137/32 -j REJECT --reject-with icmp-port-unreachable",
     "every copy"),
    ("-A OUTPUT -m conntrack --ctstate INVALID -j DROP", "INVALID conntrack state"),
    ("-A OUTPUT -p tcp -m statistic --mode random --probability 0.05 -j DROP", "a share"),
    ("-A OUTPUT -j EGRESS\n-A EGRESS -s 192.168.50.0/24 -j DROP", "every copy"),
])
def test_output_rules_that_refuse_the_copies_warn(rule: str, why: str) -> None:
    """The C tool's `raw fd (Operation not permitted)`: online's own OUTPUT refuses the
    raw-socket sends. Named before `up`, with the setting that avoids it."""
    inv = inventory()
    found = output_findings(inv, rule.replace("\\n", "\n"))
    ids(found)
    assert len(found) == 1 and found[0].severity is Severity.WARN, found
    assert found[0].host == "online1" and why in found[0].message
    assert found[0].hint and "engine.datalink" in found[0].hint
    if "INVALID" in rule:
        assert "conntrack.notrack" in found[0].hint


@pytest.mark.parametrize("rule", [
    "-A OUTPUT -p tcp -m tcp --dport 443 -j DROP",        # another port
    "-A OUTPUT -p udp -j DROP",                            # another protocol
    "-A OUTPUT -d 10.0.0.0/8 -j DROP",                     # another destination
    "-A OUTPUT ! -s 192.168.50.0/24 -j DROP",              # everything but the pool
    "-A OUTPUT -p tcp --dport 80 -j ACCEPT",               # not refusing
    "-A EGRESS -j DROP",                                   # a chain OUTPUT never jumps to
])
def test_output_rules_that_spare_the_copies_are_quiet(rule: str) -> None:
    assert output_findings(inventory(), rule) == []


def test_output_rules_checked_against_notrack_and_datalink() -> None:
    invalid = "-A OUTPUT -m state --state INVALID -j DROP"
    notrack = edited("staging.yaml", "notrack: false", "notrack: true")
    assert output_findings(notrack, invalid) == []       # UNTRACKED, not INVALID
    datalink = edited("staging.yaml", "datalink: false", "datalink: true")
    facts = with_host(healthy(datalink), "online1",
                      iptables=parse_iptables_save(SAVE.format(rules=invalid)))
    assert "online.output_refuses" not in {f.id for f in run_checks(datalink, facts,
                                                                   operator())}
