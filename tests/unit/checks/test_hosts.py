"""The hosts family (labctl.up.checks.hosts, labctl.up.sudo): reachable, facts known, python3, root
or sudo, the sudo rights, host keys checked."""

from __future__ import annotations

from labctl.facts.system import PythonVersion
from labctl.model import Severity
from labctl.transport.base import Result
from labctl.up import sudo
from labctl.up.checks import blocking, run_checks
from tests.unit.checks.fired import ids
from tests.unit.checks_facts import (
    edited,
    healthy,
    inventory,
    operator,
    with_host,
)
from tests.unit.test_sudo_rights import sudo_target


def test_unreachable_host() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "target", unreachable="cannot connect: refused")
    found = run_checks(inv, facts, operator())
    assert "host.unreachable" in ids(found)
    assert all(f.host != "target" or f.id == "host.unreachable" for f in found)


def test_python_missing_and_old() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "assistant", python=PythonVersion(False))
    facts = with_host(facts, "target", python=PythonVersion(True, 3, 6, 8))
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "python.missing"]
    ids(found)
    assert {f.host for f in found} == {"assistant", "target"}


def test_unknown_facts_warn() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "online1", python=None,
                      unknown={"python": "python3 --version: timed out"})
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "facts.unknown"]
    ids(found)
    assert found and "timed out" in found[0].message and found[0].severity is Severity.WARN


def test_no_root_no_sudo() -> None:
    inv = sudo_target()
    facts = with_host(healthy(inv), "target", uid=1000, sudo=False)
    assert "privilege.missing" in ids(run_checks(inv, facts, operator()))
    facts = with_host(healthy(inv), "target", uid=1000, sudo=True)
    assert "privilege.missing" not in ids(run_checks(inv, facts, operator()))


def test_non_root_login_without_sudo_true_is_an_error_even_when_sudo_works() -> None:
    inv = inventory()  # target: sudo: false
    facts = with_host(healthy(inv), "target", uid=1000, sudo=True)
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "privilege.missing"]
    assert [f.host for f in found] == ["target"] and "sudo: true" in found[0].hint


def test_a_refused_sudo_program_is_an_error_naming_host_and_program() -> None:
    """privilege.sudo_command (labctl.up.sudo, run after the plan; tests/unit/test_sudo_rights.py
    asks a fake host)."""
    denied = Result("web", ("sudo", "-n", "-l", "iptables"), 1)
    found = sudo.findings("web", "ops", {"iptables": denied})
    assert ids(found) == {"privilege.sudo_command"} and blocking(found)
    assert found[0].host == "web" and "`iptables`" in found[0].message


def test_unchecked_host_keys_are_loud_per_host() -> None:
    inv = edited("staging.yaml", "strict_host_key_checking: true",
                 "strict_host_key_checking: false")
    found = [f for f in run_checks(inv, healthy(inv), operator())
             if f.id == "ssh.host_key_unchecked"]
    ids(found)
    assert sorted(f.host for f in found) == sorted(h.name for h in inv.all_hosts())
    assert all(f.severity is Severity.WARN and "not checked" in f.message for f in found)
    assert "ssh.host_key_unchecked" not in ids(run_checks(inventory(), healthy(inventory()),
                                                          operator()))


def test_unchecked_host_keys_name_the_jump_host_too() -> None:
    inv = edited("staging.yaml", "strict_host_key_checking: true",
                 "strict_host_key_checking: false\n  jump: {address: bastion.example.net}")
    found = [f for f in run_checks(inv, healthy(inv), operator())
             if f.id == "ssh.host_key_unchecked"]
    assert found and all("jump host bastion.example.net" in f.message for f in found)
