"""Plans for three-server and two-server inventories, and the engine flag builders."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from labctl.errors import UsageError
from labctl.facts import OperatorFacts, gather_facts
from labctl.facts.routes import Route
from labctl.hosts.journal import Snapshot, host_dir, new_journal
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import Inventory
from labctl.model import ROUTE_PROTO, ChangeKind
from labctl.transport import FakeTransport, HostPool
from labctl.up import run as ops
from labctl.up.engine_args import EnginePaths, intercept_argv, response_filter, tcpcopy_argv
from labctl.up.plan import MAX_CHAIN, NONEMPTY, PlanOptions, channel_changes, make_plan
from labctl.up.trust import journal_problems
from tests.unit.checks_facts import ROOT, A, N, healthy, inventory, proc_of, two_server, with_host
from tests.unit.test_facts_gather import scripted
from tests.unit.up_hosts import simulated_host

READ_ONLY = ("ip", "grep", "python3", "iptables", "sysctl")


def test_three_server_plan_is_one_guarded_route() -> None:
    inv = inventory("local")
    plan = make_plan(inv, healthy(inv))
    assert plan.lab == "demo"
    assert [c.host for c in plan.changes] == ["target"]
    route = plan.changes[0]
    assert route.kind is ChangeKind.ROUTE and route.guarded
    assert route.apply == (("ip", "route", "add", "10.79.1.0/24", "via", "10.77.1.30",
                            "proto", str(ROUTE_PROTO)),)
    assert route.undo == (("ip", "route", "del", "10.79.1.0/24", "via", "10.77.1.30",
                           "proto", str(ROUTE_PROTO)),)
    assert route.probe is not None and route.probe[:3] == ("python3", "-c", NONEMPTY)
    assert route.probe[3:] == ("ip", "route", "show", "table", "main", "exact", "10.79.1.0/24",
                               "via", "10.77.1.30", "proto", "252")


def test_plan_from_facts_gathered_over_fake_transports() -> None:
    inv = inventory("staging")
    pool = HostPool(inv, factory=lambda spec: scripted(spec.name))
    facts = gather_facts(pool, inv)
    plan = make_plan(inv, facts, fix=True)
    # the recording's addresses are not the inventory's, so the target's interface (and with
    # it the rp_filter fix) is unknown; ip_forward is already 0
    assert [c.step for c in plan.changes] == ["route-192.168.50.0/24"]
    assert any("ip_forward is already 0" in n for n in plan.notes)
    for fake in pool.transports.values():
        assert isinstance(fake, FakeTransport)
        assert all(cmd[0] in (*READ_ONLY, "id", "test", "printenv", "ss", "iptables-save",
                              "pypy3", "nproc", "stat")
                   for cmd in fake.commands)
        assert not any(c in ("add", "del", "-A", "-I", "-N", "-D", "-w") for cmd in fake.commands
                       for c in cmd[:4] if cmd[0] != "python3")


def test_route_already_in_place_is_noted() -> None:
    inv = inventory("staging")
    facts = healthy(inv)
    routes = (*(facts["target"].routes or ()),
              Route(dst=N("192.168.50.0/24"), gateway=A("192.168.44.136"), protocol="252"))
    plan = make_plan(inv, with_host(facts, "target", routes=routes))
    assert any("already in place" in n for n in plan.notes)
    assert plan.changes[0].noop_reason.startswith("route 192.168.50.0/24")


def test_fix_sets_ip_forward_and_restores_it_on_undo() -> None:
    inv = inventory("staging")
    facts = healthy(inv)
    facts = with_host(facts, "assistant", proc=proc_of(facts, "assistant", ip_forward=1))
    assert make_plan(inv, facts).changes[0].kind is ChangeKind.ROUTE  # no --fix: no sysctl
    first = make_plan(inv, facts, PlanOptions(fix=True)).changes[0]
    assert first.host == "assistant" and first.kind is ChangeKind.SYSCTL
    assert first.probe == ("grep", "-qx", "0", "/proc/sys/net/ipv4/ip_forward")
    assert first.undo == (("sysctl", "-w", "net.ipv4.ip_forward=1"),)


def test_notrack_chain_and_rules_are_tagged_and_undone_exactly() -> None:
    inv = inventory("staging")
    plan = make_plan(inv, healthy(inv), notrack=True)
    chains = [c for c in plan.changes if c.step == "notrack-chain"]
    assert {c.host for c in chains} == {"online1", "target"}
    chain = chains[0]
    assert chain.apply[0] == ("iptables", "-w", "-t", "raw", "-N", "LABCTL-staging")
    assert chain.undo[0] == ("iptables", "-w", "-t", "raw", "-F", "LABCTL-staging")
    assert chain.undo[-1] == ("iptables", "-w", "-t", "raw", "-X", "LABCTL-staging")
    assert {a[5] for a in chain.undo[1:-1]} == {"PREROUTING", "OUTPUT"}
    for change in plan.changes:
        if change.kind is ChangeKind.IPTABLES:
            joined = " ".join(change.apply[-1])
            assert f"--comment labctl:staging:{change.step}" in joined
            assert change.probe is not None and "-C" in change.probe
    rules = [c for c in plan.changes if c.step.startswith("notrack-") and c.step != "notrack-chain"]
    for rule in rules:
        assert [a[4] for a in rule.apply] == ["-A"] and [a[4] for a in rule.undo] == ["-D"]
        assert rule.apply[0][5:] == rule.undo[0][5:]
    # order: NOTRACK before the guarded route; route last
    assert plan.changes[-1].kind is ChangeKind.ROUTE


def test_two_server_plan_drops_replies_on_each_online_host() -> None:
    inv = two_server()
    hosts = inv.hosts.model_copy(update={"online": [
        *inv.hosts.online, inv.hosts.online[0].model_copy(
            update={"name": "online2", "address": A("192.168.44.140")})]})
    both = inv.model_copy(update={"hosts": hosts})
    assert {c.host for c in make_plan(both, healthy(both)).changes} == {"online1", "online2"}
    plan = make_plan(inv, healthy(inv))
    assert [(c.host, c.step) for c in plan.changes] == [("online1", "drop-chain"),
                                                        ("online1", "drop-80")]
    chain, drop = plan.changes
    assert chain.apply[1][4:6] == ("-I", "INPUT") and not chain.guarded
    assert drop.guarded
    assert drop.apply == (("iptables", "-w", "-t", "filter", "-A", "LABCTL-staging", "-s",
                           "192.168.44.137/32", "-p", "tcp", "--sport", "80", "-m", "comment",
                           "--comment", "labctl:staging:drop-80", "-j", "DROP"),)
    assert any("two-server" in n for n in plan.notes)


def test_chain_names_fit_iptables_limit() -> None:
    text = (ROOT / "inventories/staging.yaml").read_text()
    inv = parse_inventory(text.replace("lab: staging", "lab: a-very-long-lab1"))
    plan = make_plan(inv, healthy(inv), notrack=True)
    names = {a[5] for c in plan.changes for a in c.apply if a[4] == "-N"}
    assert names == {"LABCTL-a-very-long-lab1"}
    assert all(len(n) <= MAX_CHAIN for n in names)


def test_tcpcopy_and_intercept_flags_from_staging() -> None:
    inv = inventory("staging")
    paths = EnginePaths(key_file="/var/lib/labctl/staging/online1/channel.key")
    argv = tcpcopy_argv(inv, inv.hosts.online[0], paths)
    text = shlex.join(argv)
    assert "-x 80-192.168.44.137:80" in text
    assert "-s 192.168.44.136 -p 36524" in text
    assert "-c 192.168.50.x" in text
    assert "-C 2 -t 120 -k 240 -m 512 --max-sessions 65536" in text
    assert "-L" in argv and "-W" not in argv and "-n" not in argv and "-r" not in argv
    assert "--capture-acks" not in argv and "--hold-timeout" not in argv  # tcpcopy's default
    assert argv[-2:] == ["--key-file", "/var/lib/labctl/staging/online1/channel.key"]
    held = inv.model_copy(update={"engine": inv.engine.model_copy(update={"hold_timeout": 5})})
    assert "-L --hold-timeout 5" in shlex.join(tcpcopy_argv(held, held.hosts.online[0], paths))
    iargv = intercept_argv(inv, EnginePaths(key_file="/k", interface="eth0"))
    assert iargv == ["-F", "tcp and src port 80 and src host 192.168.44.137", "-p", "36524",
                     "-b", "192.168.44.136", "-i", "eth0", "--key-file", "/k"]
    assert "--capture-ring-mb" not in argv            # unset: the engine's default ring
    for ring in (0, 64):                              # 0 is said (recv()), not dropped
        rung = inv.model_copy(update={"engine": inv.engine.model_copy(
            update={"capture_ring_mb": ring})})
        flag = ["--capture-ring-mb", str(ring)]
        assert shlex.join(flag) in shlex.join(tcpcopy_argv(rung, rung.hosts.online[0], paths))
        assert shlex.join(flag) in shlex.join(intercept_argv(rung, EnginePaths()))
    assert "--gather-ms" not in argv                  # unset: the engine's default (off)
    gathered = inv.model_copy(update={"engine": inv.engine.model_copy(update={"gather_ms": 2})})
    assert "--gather-ms 2" in shlex.join(tcpcopy_argv(gathered, gathered.hosts.online[0], paths))
    assert "--gather-ms 2" in shlex.join(intercept_argv(gathered, EnginePaths()))
    assert "--target-stall-s" not in argv             # unset: tcpcopy's default
    stall = inv.model_copy(update={"engine": inv.engine.model_copy(update={"target_stall_s": 0})})
    assert "--target-stall-s 0" in shlex.join(tcpcopy_argv(stall, stall.hosts.online[0], paths))


def test_engine_flags_options_and_two_server() -> None:
    inv = two_server()
    engine = inv.engine.model_copy(update={"multiplier": 2, "sample_percent": 50,
                                           "no_wait": True, "lonely": False,
                                           "capture_acks": True})
    inv2 = inv.model_copy(update={"engine": engine})
    argv = tcpcopy_argv(inv2, inv2.hosts.online[0], EnginePaths(stats_file="/s", pid_file="/p",
                                                                log_file="/l"))
    text = shlex.join(argv)
    assert "-s 192.168.44.137" in text and "-c 192.168.44.128" in text
    assert "-n 2" in text and "-r 50" in text and "-W" in argv and "-L" not in argv
    assert "--capture-acks" in argv
    assert text.endswith("--stats-file /s -P /p -l /l")
    assert intercept_argv(inv, EnginePaths())[4:6] == ["-b", "192.168.44.137"]


def test_multi_port_filter_and_datalink_refused() -> None:
    text = (ROOT / "inventories/staging.yaml").read_text()
    inv = parse_inventory(text.replace(
        "  - {port: 80, target_port: 80}",
        "  - {port: 80, target_port: 80}\n  - {port: 6379, target_port: 6380, "
        "online_address: 192.168.44.128}"))
    assert response_filter(inv) == ("tcp and (src port 80 or src port 6380) and "
                                    "src host 192.168.44.137")
    argv = tcpcopy_argv(inv, inv.hosts.online[0], EnginePaths())
    assert argv[1] == "80-192.168.44.137:80,192.168.44.128:6379-192.168.44.137:6380"
    dl = inv.model_copy(update={"engine": inv.engine.model_copy(update={"datalink": True})})
    with pytest.raises(UsageError, match="datalink"):
        tcpcopy_argv(dl, dl.hosts.online[0], EnginePaths())


def test_channel_port_is_restricted_to_the_online_hosts_on_intercepts_host() -> None:
    inv = inventory("staging")
    changes = channel_changes(inv)
    assert {c.host for c in changes} == {"assistant"}
    assert [c.step for c in changes] == ["channel-chain", "channel-from-online", "channel-drop"]
    chain, accept, drop = changes
    tag = ("-m", "comment", "--comment", "labctl:staging:")
    # the chain is jumped to first in INPUT; its rules RETURN the online host, DROP the rest
    assert chain.apply[1][:6] == ("iptables", "-w", "-t", "filter", "-I", "INPUT")
    assert accept.apply == (("iptables", "-w", "-t", "filter", "-A", "LABCTL-staging",
                             "-s", "192.168.44.128/32", "-p", "tcp", "--dport", "36524",
                             *tag[:3], "labctl:staging:channel-from-online", "-j", "RETURN"),)
    assert drop.apply == (("iptables", "-w", "-t", "filter", "-A", "LABCTL-staging",
                           "-p", "tcp", "--dport", "36524",
                           *tag[:3], "labctl:staging:channel-drop", "-j", "DROP"),)
    for c in changes:  # exact undo (-D / -F -X) and a read-only -C probe, never guarded
        assert c.kind is ChangeKind.IPTABLES and not c.guarded
        assert c.probe is not None and c.probe[4] == "-C"
        assert all(u[4] in ("-D", "-F", "-X") for u in c.undo)
    assert "only online1 may connect" in drop.description


def test_channel_rule_covers_every_online_host_and_intercepts_workers() -> None:
    two = with_host_online(inventory("staging"))
    changes = channel_changes(two, workers=3)
    (froms,) = [c for c in changes if c.step.startswith("channel-from-")]
    # one command adds a rule per online host (iptables expands the list); -C finds them all;
    # each is deleted on its own (one removed by hand does not keep the others in place)
    assert froms.apply[0][7] == "192.168.44.128/32,192.168.44.149/32"
    assert froms.probe is not None and froms.probe[7] == froms.apply[0][7]
    assert [u[7] for u in froms.undo] == ["192.168.44.128/32", "192.168.44.149/32"]
    assert "the 2 online hosts (online1, online2)" in froms.description
    # at fleet size, numbered names in brackets (readable in 80 columns)
    many = channel_changes(with_host_online(inventory("staging"), *range(2, 17)))
    assert "the 16 online hosts (online[1-16])" in many[1].description
    assert "(only online[1-16] may connect)" in many[2].description
    assert all("36524:36526" in c.apply[0] for c in changes[1:])
    # two-server: intercept runs on the target, so the rule is there
    assert {c.host for c in channel_changes(two_server())} == {"target"}


def test_channel_rule_comes_before_intercept_in_up_and_is_trusted_by_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    inv = inventory("staging")
    report = ops.plan(inv, ops.UpOptions(factory=lambda s: simulated_host(s.name),
                                         operator_facts=OperatorFacts()))
    assert report.plan is not None
    steps = [c.step for c in report.plan.changes if c.host == "assistant"]
    assert steps == ["channel-chain", "channel-from-online", "channel-drop", "daemon:intercept"]
    j = new_journal(inv.lab, "assistant", "run1", now=1.0)
    for c in report.plan.changes:
        if c.host == "assistant" and c.daemon is None:
            j.plan_entry(c, Snapshot(), 1.0)
    hdir = host_dir(inv.state_dir, inv.lab, "assistant")
    assert journal_problems(j, inv.lab, "assistant", hdir, inv.chain) == []


def with_host_online(inv: Inventory, *numbers: int) -> Inventory:
    """staging with more online hosts: onlineN at 192.168.44.(147+N) for N in `numbers`
    (default: a second one, online2 at 192.168.44.149)."""
    text = (ROOT / "inventories/staging.yaml").read_text()
    line = next(t for t in text.splitlines() if "name: online1" in t)
    extra = [line.replace("online1", f"online{n}").replace("192.168.44.128",
                                                           f"192.168.44.{147 + n}")
             for n in numbers or (2,)]
    return parse_inventory(text.replace(line, "\n".join([line, *extra])))
