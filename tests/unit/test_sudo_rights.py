"""labctl.up.sudo: which programs a plan runs through sudo on each host, `sudo -n -l` for each
(as the login user, one round trip), and the preflight error naming the host and the programs."""

from __future__ import annotations

import dataclasses
from typing import Any

from labctl.facts import HostFacts
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.model import Severity
from labctl.transport import FakeTransport, HostPool, Result
from labctl.up import sudo
from labctl.up.checks import blocking
from labctl.up.plan import make_plan
from tests.unit.checks_facts import ROOT, healthy

TARGET_SUDO = ("{name: target, address: 192.168.44.137, port: 22, user: root,",
               "{name: target, address: 192.168.44.137, port: 22, user: ops,")


def sudo_target() -> Inventory:
    """staging.yaml with the target reached as `ops` with `sudo: true`."""
    text = (ROOT / "inventories/staging.yaml").read_text().replace(*TARGET_SUDO)
    line = next(ln for ln in text.splitlines() if "{name: target," in ln)
    return parse_inventory(text.replace(line, line.replace("sudo: false", "sudo: true")))


def with_host(facts: dict[str, HostFacts], host: str, **changes: Any) -> dict[str, HostFacts]:
    return {**facts, host: dataclasses.replace(facts[host], **changes)}


def _sudo_fake(refuse: set[str]) -> FakeTransport:
    fake = FakeTransport("target", sudo_user=True)
    fake.on(["id", "-un"], stdout="ops\n")
    fake.on_prefix(["sudo", "-n", "-l"], handler=lambda argv: Result(
        "target", argv, 1 if argv[3] in refuse else 0, "" if argv[3] in refuse
        else f"/usr/sbin/{argv[3]}\n"))
    return fake


def test_sudo_rights_of_every_planned_program_are_asked_and_refusals_name_host_and_command(
) -> None:
    inv = sudo_target()
    facts = with_host(healthy(inv), "target", uid=1000, sudo=True, systemd=False)
    the_plan = make_plan(inv, facts)
    names = sudo.programs(the_plan, "target", systemd=False)
    assert {"ip", "iptables", "iptables-save", "install", "mv", "kill", "python3"} <= set(names)
    fake = _sudo_fake({"iptables", "sysctl"})
    pool = HostPool(inv, factory=lambda spec: fake if spec.name == "target" else
                    FakeTransport(spec.name))
    found = sudo.check(inv, the_plan, facts, pool)
    assert fake.calls[0].argv == ("id", "-un")
    asked = [c.argv[3] for c in fake.calls[1:]]
    assert asked == names and all(not c.sudo for c in fake.calls)  # as the login user
    assert [(f.id, f.host, f.severity) for f in found] == [
        ("privilege.sudo_command", "target", Severity.ERROR)]
    assert "`iptables`" in found[0].message and "'ops'" in found[0].message
    assert blocking(found)  # up stops before any change
    # every program allowed: nothing; a root login or a host without sudo: not even asked
    assert sudo.check(inv, the_plan, facts, HostPool(
        inv, factory=lambda spec: _sudo_fake(set()) if spec.name == "target"
        else FakeTransport(spec.name))) == []
    root = with_host(facts, "target", uid=0)
    fakes = HostPool(inv, factory=lambda s: FakeTransport(s.name))
    assert sudo.check(inv, the_plan, root, fakes) == []


def test_sudo_findings_quote_what_sudo_said() -> None:
    noise = "sudo: unable to resolve host h: Name or service not known\n"
    answers = {"ip": Result("h", ("sudo",), 1, "", noise + "sudo: a password is required\n"),
               "true": Result("h", ("sudo",), 0, "/usr/bin/true\n")}
    (f,) = sudo.findings("h", "ops", answers)
    assert "`ip`" in f.message and "`sudo -n -l ip`: sudo: a password is required" in f.message
    assert "`true`" not in f.message
    (f,) = sudo.findings("h", "ops", {"ip": Result("h", ("sudo",), 1, "", noise)})
    assert "`sudo -n -l ip`: not allowed" in f.message and "resolve" not in f.message
