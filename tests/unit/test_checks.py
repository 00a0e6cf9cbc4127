"""Every preflight check fires on facts made to trip it, and stays quiet on a healthy lab."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from labctl.facts import HostFacts
from labctl.facts.base import FactParseError
from labctl.facts.iptables import parse_iptables_save
from labctl.facts.paths import PathStat, parse_stats
from labctl.facts.proc import Conntrack, ProcValues
from labctl.facts.routes import Route, RouteGet
from labctl.facts.sockets import Listener
from labctl.facts.system import PypyVersion, PythonVersion
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.model import ChangeKind, Finding, Severity
from labctl.transport.base import Result
from labctl.up import sudo
from labctl.up.checks import CHECK_IDS, blocking, fix_changes, run_checks
from labctl.up.statedir import mkdir_argv
from tests.unit.checks_facts import ROOT, A, N, healthy, inventory, operator
from tests.unit.test_sudo_rights import sudo_target

FIRED: set[str] = set()


def with_host(facts: dict[str, HostFacts], host: str, **changes: Any) -> dict[str, HostFacts]:
    out = dict(facts)
    out[host] = dataclasses.replace(facts[host], **changes)
    return out


def proc_of(facts: dict[str, HostFacts], host: str, **changes: Any) -> ProcValues:
    proc = facts[host].proc
    assert proc is not None
    return dataclasses.replace(proc, **changes)


def ids(findings: list[Finding]) -> set[str]:
    FIRED.update(f.id for f in findings)
    return {f.id for f in findings}


def edited(text_from: str, old: str, new: str) -> Inventory:
    text = (ROOT / "inventories" / text_from).read_text()
    assert old in text
    return parse_inventory(text.replace(old, new))


def two_server(port: int = 80) -> Inventory:
    text = (ROOT / "inventories/staging.yaml").read_text()
    text = text.replace("topology: three-server", "topology: two-server")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("  assistant:"))
    text = text.replace("networks: [192.168.50.0/24]", "networks: []")
    text = text.replace("pool: [192.168.50.x]", "pool: []")
    text = text.replace("{port: 80, target_port: 80}", f"{{port: 80, target_port: {port}}}")
    return parse_inventory(text)


@pytest.mark.parametrize("name", ["staging", "local"])
def test_healthy_lab_has_no_errors_or_warnings(name: str) -> None:
    inv = inventory(name)
    findings = run_checks(inv, healthy(inv), operator())
    assert [f for f in findings if f.severity is not Severity.INFO] == []


def test_two_server_healthy() -> None:
    inv = two_server()
    assert [f for f in run_checks(inv, healthy(inv), operator())
            if f.severity is not Severity.INFO] == []


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


def test_assistant_ip_forward_and_its_fix() -> None:
    inv = inventory()
    base = healthy(inv)
    proc = proc_of(base, "assistant", ip_forward=1)
    facts = with_host(base, "assistant", proc=proc)
    found = run_checks(inv, facts, operator())
    hit = [f for f in found if f.id == "assistant.ip_forward"]
    ids(hit)
    assert hit[0].severity is Severity.ERROR and not hit[0].refusal and "--fix" in hit[0].hint
    fixes = fix_changes(inv, facts, found)
    assert [c.apply for c in fixes] == [(("sysctl", "-w", "net.ipv4.ip_forward=0"),)]
    assert fixes[0].undo == (("sysctl", "-w", "net.ipv4.ip_forward=1"),)
    assert fixes[0].kind is ChangeKind.SYSCTL and fixes[0].host == "assistant"


@pytest.mark.parametrize(
    ("ct", "expected", "severity"),
    [
        (Conntrack(False), "conntrack.absent", Severity.INFO),
        (Conntrack(True, 900, 1000), "conntrack.usage", Severity.ERROR),
        (Conntrack(True, 100, 12000), "conntrack.headroom", Severity.WARN),
    ],
)
def test_conntrack(ct: Conntrack, expected: str, severity: Severity) -> None:
    inv = inventory()
    base = healthy(inv)
    facts = with_host(base, "online1", proc=proc_of(base, "online1", conntrack=ct))
    found = [f for f in run_checks(inv, facts, operator()) if f.host == "online1"]
    ids(found)
    assert [(f.id, f.severity) for f in found] == [(expected, severity)]
    if expected != "conntrack.absent":
        fixes = fix_changes(inv, facts, found)
        assert fixes and all(c.kind is ChangeKind.IPTABLES for c in fixes)
        assert any("NOTRACK" in c.apply[0] for c in fixes)


def test_conntrack_not_checked_on_assistant() -> None:
    inv = inventory()
    base = healthy(inv)
    proc = proc_of(base, "assistant", conntrack=Conntrack(True, 999, 1000))
    assert not ids(run_checks(inv, with_host(base, "assistant", proc=proc), operator()))


def test_rp_filter_on_target_and_fix() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "target",
                      proc=ProcValues(0, Conntrack(True, 1, 100000),
                                      {"all": 1, "default": 1, "eth0": 0}))
    found = run_checks(inv, facts, operator())
    assert "target.rp_filter" in ids(found)
    fixes = fix_changes(inv, facts, found)
    assert [c.apply[0][2] for c in fixes] == ["net.ipv4.conf.all.rp_filter=0"]


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
    from tests.unit.test_datalink import datalink_inventory, with_macs

    inv = datalink_inventory()
    assert "datalink.mac_unknown" not in ids(run_checks(inv, with_macs(healthy(inv)), operator()))
    routed = with_macs(healthy(inv), on_link=False)  # via a gateway missing from the ARP table
    found = [f for f in run_checks(inv, routed, operator()) if f.id == "datalink.mac_unknown"]
    ids(found)
    assert len(found) == 1 and found[0].severity is Severity.ERROR and found[0].host == "online1"
    assert found[0].hint and "ping 192.168.44.254 once from online1" in found[0].hint
    off = inventory()  # datalink: false needs no next hop at all
    assert "datalink.mac_unknown" not in ids(run_checks(off, routed, operator()))


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


def test_blocking_and_force() -> None:
    warn = Finding("x", Severity.WARN, "h", "m")
    err = Finding("y", Severity.ERROR, "h", "m")
    ref = Finding("z", Severity.ERROR, "h", "m", refusal=True)
    info = Finding("i", Severity.INFO, "h", "m")
    assert blocking([warn, err, ref, info]) == [err, ref]
    assert blocking([warn, err, ref, info], force=True) == [ref]
    # --strict: warnings block too (e.g. target.not_listening), never the notes
    assert blocking([warn, err, ref, info], strict=True) == [warn, err, ref]


def engine_with(**keys: Any) -> Inventory:
    inv = inventory()
    return inv.model_copy(update={"engine": inv.engine.model_copy(update=keys)})


def test_pypy3_asked_for_but_absent_is_an_error_naming_each_daemon_host() -> None:
    inv = engine_with(runtime="pypy3")
    found = [f for f in run_checks(inv, healthy(inv), operator())
             if f.id == "runtime.unavailable"]
    assert ids(found) == {"runtime.unavailable"}
    assert sorted(f.host for f in found) == ["assistant", "online1"]  # not the target
    assert all(f.severity is Severity.ERROR and "pypy3 is not installed" in f.message
               and "never installs" in f.hint for f in found)


def test_two_server_asks_the_target_which_runs_intercept() -> None:
    base = two_server()
    inv = base.model_copy(update={"engine": base.engine.model_copy(update={"runtime": "pypy3"})})
    found = [f for f in run_checks(inv, healthy(inv), operator())
             if f.id == "runtime.unavailable"]
    assert sorted(f.host for f in found) == ["online1", "target"]


def test_pypy3_present_passes_and_an_old_one_does_not() -> None:
    inv = engine_with(runtime="pypy3")
    ok = PypyVersion(True, PythonVersion(True, 3, 9, 16), "7.3.11")
    facts = with_host(with_host(healthy(inv), "assistant", pypy=ok), "online1", pypy=ok)
    assert "runtime.unavailable" not in ids(run_checks(inv, facts, operator()))
    old = PypyVersion(True, PythonVersion(True, 3, 7, 13), "7.3.9")
    found = [f for f in run_checks(inv, with_host(facts, "online1", pypy=old), operator())
             if f.id == "runtime.unavailable"]
    assert [f.host for f in found] == ["online1"] and "Python >= 3.9" in found[0].message


def test_unknown_pypy_fact_errors_for_pypy3_and_warns_for_auto() -> None:
    facts = with_host(healthy(inventory()), "online1", pypy=None,
                      unknown={"pypy": "`pypy3 --version`: timed out"})
    asked = [f for f in run_checks(engine_with(runtime="pypy3"), facts, operator())
             if f.host == "online1" and f.id == "runtime.unavailable"]
    assert len(asked) == 1 and "timed out" in asked[0].message
    auto = [f for f in run_checks(engine_with(runtime="auto"), facts, operator())
            if f.host == "online1" and f.id in ("runtime.unavailable", "facts.unknown")]
    assert [(f.id, f.severity) for f in auto] == [("facts.unknown", Severity.WARN)]
    assert "auto chose python3" in auto[0].message
    assert not [f for f in run_checks(engine_with(runtime="python3"), facts, operator())
                if f.host == "online1"]


def test_pypy3_tcpcopy_with_a_small_memory_cap_is_a_warning() -> None:
    inv = engine_with(runtime="auto", memory_mb=256)
    facts = with_host(healthy(inv), "online1",
                      pypy=PypyVersion(True, PythonVersion(True, 3, 9, 16), "7.3.11"))
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "runtime.memory"]
    assert ids(found) == {"runtime.memory"} and [f.host for f in found] == ["online1"]
    assert found[0].severity is Severity.WARN and "memory_mb 256" in found[0].message
    assert "runtime.memory" not in ids(run_checks(inv, healthy(inv), operator()))  # python3
    big = engine_with(runtime="auto", memory_mb=512)
    assert "runtime.memory" not in ids(run_checks(big, facts, operator()))


def test_workers_auto_needs_the_cpu_count() -> None:
    inv = engine_with(workers="auto")
    assert "runtime.unavailable" not in ids(run_checks(inv, healthy(inv), operator()))
    facts = with_host(healthy(inv), "assistant", cpus=None, unknown={"cpus": "nproc: not found"})
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "runtime.unavailable"]
    assert [f.host for f in found] == ["assistant"] and "CPU count is unknown" in found[0].message
    assert "engine.workers" in found[0].hint




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


def test_state_dir_owned_by_someone_else_or_writable_is_an_error() -> None:
    inv = inventory()
    hdir = inv.remote_dir(inv.host("assistant"))
    other = (PathStat("/var/lib/labctl", 0, "root", 0o755, "directory"),
             PathStat(hdir, 1001, "mallory", 0o700, "directory"))
    found = [f for f in run_checks(inv, with_host(healthy(inv), "assistant", state_dirs=other),
                                   operator()) if f.id == "state_dir.unsafe"]
    ids(found)
    assert len(found) == 1 and found[0].severity is Severity.ERROR
    assert found[0].host == "assistant"
    assert f"{hdir} is owned by mallory (uid 1001)" in found[0].message
    assert "owner mallory, mode 0700" in found[0].message
    writable = (PathStat("/var/lib/labctl", 0, "root", 0o1777, "directory"),)
    found = [f for f in run_checks(inv, with_host(healthy(inv), "online1", state_dirs=writable),
                                   operator()) if f.id == "state_dir.unsafe"]
    assert [f.host for f in found] == ["online1"] and "mode 1777" in found[0].message
    # the connecting user's own directory (uid 1000 connecting as uid 1000) is fine
    own = (PathStat("/var/lib/labctl", 1000, "deploy", 0o700, "directory"),)
    quiet = with_host(healthy(inv), "online1", state_dirs=own, uid=1000, sudo=True)
    assert "state_dir.unsafe" not in ids(run_checks(inv, quiet, operator()))
    # unknown owner: a could-not-check warning, not silence
    unknown = with_host(healthy(inv), "target", state_dirs=None,
                        unknown={"state_dirs": "stat not found on the host"})
    msgs = [f.message for f in run_checks(inv, unknown, operator()) if f.id == "facts.unknown"]
    assert any("state_dir: stat not found" in m for m in msgs)


def test_stat_output_parses_existing_paths_and_skips_missing_ones() -> None:
    res = Result("h", ("stat",), 1, "0 root 755 directory|/var/lib/labctl\n"
                 "1001 mal lory 700 directory|/var/lib/my dir\n",
                 "stat: cannot statx '/var/lib/labctl/x': No such file or directory\n")
    with pytest.raises(FactParseError):  # an owner name with a space is not stat's output
        parse_stats(res)
    res = Result("h", ("stat",), 1, "0 root 755 directory|/var/lib/labctl\n"
                 "1001 mallory 2770 directory|/var/lib/my dir\n",
                 "stat: cannot statx '/var/lib/labctl/x': No such file or directory\n")
    got = parse_stats(res)
    assert [(s.path, s.owner, s.mode_text) for s in got] == [
        ("/var/lib/labctl", "root", "0755"), ("/var/lib/my dir", "mallory", "2770")]
    with pytest.raises(FactParseError, match="Permission denied"):
        parse_stats(Result("h", ("stat",), 1, "", "stat: cannot statx 'x': Permission denied\n"))
    assert mkdir_argv("/s/lab/h") == ["mkdir", "-p", "-m", "0700", "/s", "/s/lab", "/s/lab/h"]


def test_zz_every_check_id_has_fired() -> None:
    # Runs last in this module (name order within the file is definition order).
    assert set(CHECK_IDS) <= FIRED, sorted(set(CHECK_IDS) - FIRED)
