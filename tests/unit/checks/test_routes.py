"""The routes family (labctl.up.checks.routes): client networks that would cut the operator or an
inventory host off, foreign routes, an off-link assistant."""

from __future__ import annotations

import dataclasses

import pytest

from labctl.facts.routes import Route, RouteGet
from labctl.model import Severity
from labctl.up.checks import blocking, run_checks
from tests.unit.checks.fired import ids
from tests.unit.checks_facts import (
    A,
    N,
    edited,
    healthy,
    inventory,
    operator,
    with_host,
)


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("192.168.44.0/24", {"route.operator", "route.inventory_host", "route.gateway",
                             "route.exists"}),
        ("192.168.44.0/30", {"route.operator"}),
        ("192.168.44.128/26", {"route.inventory_host"}),
        ("192.168.44.254/32", {"route.gateway"}),
        ("10.0.0.0/8", {"route.wide"}),
    ],
)
def test_client_network_refusals(network: str, expected: set[str]) -> None:
    inv = edited("staging.yaml", "networks: [192.168.50.0/24]",
                 f"networks: [192.168.50.0/24, {network}]")
    found = [f for f in run_checks(inv, healthy(inv), operator()) if f.id.startswith("route.")]
    assert ids(found) == expected
    refused = [f for f in found if f.id != "route.exists"]
    assert all(f.refusal and f.severity is Severity.ERROR for f in refused)
    assert blocking(found, force=True) == refused


def test_operator_address_seen_only_by_a_host_is_refused() -> None:
    inv = edited("staging.yaml", "networks: [192.168.50.0/24]",
                 "networks: [192.168.50.0/24, 172.16.9.0/24]")
    facts = healthy(inv)
    old = facts["target"].ssh
    assert old is not None
    ssh = dataclasses.replace(old, client=A("172.16.9.7"))
    found = run_checks(inv, with_host(facts, "target", ssh=ssh), operator())
    assert "route.operator" in ids(found)


def test_existing_foreign_route_for_client_net() -> None:
    inv = inventory()
    facts = healthy(inv)
    base_routes = facts["target"].routes or ()
    routes = (*base_routes,
              Route(dst=N("192.168.50.0/24"), gateway=A("192.168.44.2"), protocol="static"))
    assert "route.exists" in ids(run_checks(inv, with_host(facts, "target", routes=routes),
                                            operator()))
    ours = (*base_routes,
            Route(dst=N("192.168.50.0/24"), gateway=A("192.168.44.136"), protocol="252"))
    assert "route.exists" not in ids(run_checks(inv, with_host(facts, "target", routes=ours),
                                                operator()))


@pytest.mark.parametrize("answer", [
    RouteGet(A("192.168.44.136"), True, A("192.168.44.254"), "eth0"),
    RouteGet(A("192.168.44.136"), False),
])
def test_assistant_off_link_is_refused_with_two_server_hint(answer: RouteGet) -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "target", route_gets={"192.168.44.136": answer})
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "assistant.off_link"]
    ids(found)
    assert found[0].refusal and "two-server" in found[0].hint


def test_loopback_is_never_the_operators_address() -> None:
    """127.0.0.0/8 is every machine's own (the operator's `lo`, or the source a host sees
    through a local forward): a client network holding it cuts no SSH session. A real
    operator address in the same inventory still is refused."""
    inv = edited("staging.yaml", "networks: [192.168.50.0/24]",
                 "networks: [192.168.50.0/24, 127.0.0.0/16]")
    facts = healthy(inv)
    old = facts["target"].ssh
    assert old is not None and A("127.0.0.1") in operator().addresses
    looped = with_host(facts, "target", ssh=dataclasses.replace(old, client=A("127.0.0.2")))
    found = [f for f in run_checks(inv, looped, operator()) if f.id.startswith("route.")]
    assert found == [], found
    real = with_host(facts, "target", ssh=dataclasses.replace(old, client=A("192.168.50.9")))
    found = [f for f in run_checks(inv, real, operator()) if f.id == "route.operator"]
    ids(found)
    assert len(found) == 1 and "the operator's address 192.168.50.9:" in found[0].message
