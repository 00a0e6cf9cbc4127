"""The real faults and step helpers against scripted hosts: a `Context` whose host pool is made
of FakeTransports (unscripted commands fail the test), no root, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.drill.context import Context
from labctl.drill.faults import drop_argvs, inject
from labctl.drill.model import check_latency, window_latency
from labctl.drill.runbook import FaultStep, TrafficStep, VerifyStep, parse_runbook
from labctl.drill.steps import LiveSteps, traffic_argv
from labctl.errors import RemoteError, UsageError
from labctl.hosts import journal as jr
from labctl.inventory.load import load_inventory
from labctl.lab import plan_lab
from labctl.transport.base import Result
from labctl.transport.fake import FakeTransport
from labctl.transport.pool import HostPool

ROOT = Path(__file__).resolve().parent.parent.parent
RUNBOOK = "name: x\ninventory: inventories/staging.yaml\nsteps:\n  - up\n"
HOSTS = ("online1", "target", "assistant")


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeTransport]:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    return {name: FakeTransport(name) for name in HOSTS}


@pytest.fixture
def ctx(hosts: dict[str, FakeTransport]) -> Context:
    """A context as `prepare` leaves it for the staging inventory, on scripted hosts."""
    said: list[str] = []
    c = Context.for_runbook(parse_runbook(RUNBOOK), say=said.append)
    c.inv = load_inventory(ROOT / "inventories/staging.yaml")
    c.pool = HostPool(c.inv, factory=lambda spec: hosts[spec.name])
    return c


def test_drop_fault_applies_then_reverts_exactly(ctx: Context,
                                                 hosts: dict[str, FakeTransport]) -> None:
    online = hosts["online1"].on_prefix(["iptables"])
    fault = inject(ctx, FaultStep(kind="drop", percent=10))
    apply, revert = drop_argvs("staging", 10, [("192.168.44.137", 80)])
    assert online.commands == [tuple(a) for a in apply]
    assert fault.kind == "drop" and "10 % of copies dropped on online1" in fault.description
    fault.revert()
    assert online.commands[len(apply):] == [tuple(a) for a in revert]
    assert not hosts["target"].commands and not hosts["assistant"].commands


def test_drop_fault_half_applied_is_undone_before_the_error(
        ctx: Context, hosts: dict[str, FakeTransport]) -> None:
    online = hosts["online1"].on_prefix(["iptables"])
    online.on_prefix(["iptables", "-w", "-I"], exit_code=1, stderr="iptables: Bad rule")
    with pytest.raises(RemoteError):
        inject(ctx, FaultStep(kind="drop", percent=10))
    _, revert = drop_argvs("staging", 10, [("192.168.44.137", 80)])
    assert online.commands[-len(revert):] == [tuple(a) for a in revert]


def test_drop_fault_on_an_unknown_host_is_refused(ctx: Context) -> None:
    with pytest.raises(UsageError, match="no online host named 'nope'"):
        inject(ctx, FaultStep(kind="drop", percent=10, host="nope"))


def test_remove_route_puts_the_same_route_back(ctx: Context,
                                               hosts: dict[str, FakeTransport]) -> None:
    route = {"dst": "192.168.50.0/24", "gateway": "192.168.44.136", "dev": "eth0",
             "protocol": "252"}
    target = hosts["target"].on(["ip", "-j", "-4", "route", "show", "192.168.50.0/24"],
                                stdout=json.dumps([route]))
    target.on_prefix(["ip", "-4", "route"])
    fault = inject(ctx, FaultStep(kind="remove-route"))
    assert target.commands[-1] == ("ip", "-4", "route", "del", "192.168.50.0/24", "via",
                                   "192.168.44.136", "dev", "eth0")
    fault.revert()
    assert target.commands[-1] == ("ip", "-4", "route", "replace", "192.168.50.0/24", "via",
                                   "192.168.44.136", "dev", "eth0", "proto", "252")


def test_remove_route_without_the_route_says_so(ctx: Context,
                                                hosts: dict[str, FakeTransport]) -> None:
    hosts["target"].on_prefix(["ip", "-j"], stdout="[]")
    with pytest.raises(RemoteError, match=r"no route to 192\.168\.50\.0/24"):
        inject(ctx, FaultStep(kind="remove-route"))


def test_live_revert_runs_the_faults_own_revert(ctx: Context,
                                                hosts: dict[str, FakeTransport]) -> None:
    hosts["online1"].on_prefix(["iptables"])
    steps = LiveSteps()
    fault = steps.apply_fault(ctx, FaultStep(kind="drop", percent=50))
    before = len(hosts["online1"].commands)
    steps.revert_fault(ctx, fault)
    assert hosts["online1"].commands[before][:3] == ("iptables", "-w", "-D")


def test_traffic_argv_runs_the_generator_in_the_client_namespace() -> None:
    lab = plan_lab("h8zz", 3)
    argv = traffic_argv(lab, TrafficStep(requests=10, mode="new", rate=50, post_sizes=[0, "64k"]))
    assert argv[:len(lab.ns_argv("client"))] == lab.ns_argv("client")
    assert argv[argv.index("--url") + 1] == f"http://{lab.hosts['online'].address}"
    assert argv[argv.index("--post-sizes") + 1] == "0,64k" and argv[-2:] == ["--rate", "50"]


def _journaled(fake: FakeTransport, path: str, journal: jr.Journal) -> None:
    """`cat` and `mv -f` of the host's journal, kept in `fake.files` (what `put` writes)."""
    fake.files[path] = journal.to_json().encode()

    def cat(argv: tuple[str, ...]) -> Result:
        data = fake.files.get(argv[1])
        return Result(fake.host, argv, 0 if data is not None else 1,
                      data.decode() if data else "", "" if data else "No such file")

    def mv(argv: tuple[str, ...]) -> Result:
        fake.files[argv[3]] = fake.files.pop(argv[2])
        return Result(fake.host, argv, 0)

    fake.on(["cat", path], handler=cat)
    fake.on_prefix(["mv", "-f"], handler=mv)


def test_netem_on_a_target_with_the_qdisc_uses_tc_journals_and_removes_exactly_it(
        ctx: Context, hosts: dict[str, FakeTransport]) -> None:
    target = hosts["target"]
    path = jr.journal_path(ctx.inventory.remote_dir(ctx.inventory.targets[0]))
    _journaled(target, path, jr.new_journal("staging", "target", "r1", 1.0))
    target.on(["sh", "-c", "test -d /sys/module/sch_netem || modprobe -n -q sch_netem"])
    target.on(["ip", "-o", "-4", "route", "get", "192.168.44.136"],
              stdout="192.168.44.136 dev eth1 src 192.168.44.137 uid 0\\    cache")
    target.on_prefix(["tc", "qdisc"])
    fault = inject(ctx, FaultStep(kind="netem", delay_ms=50, jitter_ms=5, loss_percent=1))
    assert ("tc", "qdisc", "replace", "dev", "eth1", "root", "netem", "delay", "50ms", "5ms",
            "loss", "1%") in target.commands
    assert "mechanism: tc netem" in fault.description and "eth1" in fault.description
    (entry,) = json.loads(target.files[path])["entries"]    # `down` would undo it
    assert entry["kind"] == "qdisc" and entry["status"] == "applied"
    assert entry["undo"] == [["tc", "qdisc", "del", "dev", "eth1", "root"]]
    fault.revert()
    assert ("tc", "qdisc", "del", "dev", "eth1", "root") in target.commands
    assert json.loads(target.files[path])["entries"][0]["status"] == "undone"
    assert not hosts["online1"].commands         # production traffic is never shaped


def test_netem_faults_validate_their_conditions() -> None:
    ok = FaultStep(kind="netem", delay_ms=20, reorder_percent=5, rate_kbit=1000)
    assert ok.netem_spec().describe() == "delay 20 ms, reorder 5 %, rate 1000 kbit/s"
    for params, why in (({}, "needs a condition"),
                        ({"jitter_ms": 9, "delay_ms": 1}, "jitter_ms: larger than"),
                        ({"reorder_percent": 5}, "reorder_percent: needs"),
                        ({"loss_percent": 120}, "less than or equal to 100")):
        with pytest.raises(ValueError, match=why):
            FaultStep(kind="netem", **params)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="netem faults only"):
        FaultStep(kind="drop", percent=5, delay_ms=5)
    rb = parse_runbook("name: n\ninventory: {lab: {name: n}}\nsteps:\n  - up\n"
                       "  - fault: {kind: netem, delay_ms: 50}\n  - fault: end-netem\n"
                       "  - verify: {target_p50_ms: [40, 60]}\n")
    assert [s.title() for s in rb.steps][1] == ("fault: netem delay 50 ms on the copies to the "
                                                "target")


def test_window_latency_is_the_difference_of_two_snapshots() -> None:
    before = {"0.5": 100, "1.0": 10}
    now = {"0.5": 100, "1.0": 10, "52.5": 380, "57.8": 20}
    window = window_latency(now, before)
    assert window == {"count": 400.0, "p50": 52.5, "p90": 52.5, "p99": 57.8}
    assert window_latency(before, before) is None
    step = VerifyStep(target_p50_ms=(40, 60))
    (check,) = check_latency(step, window)
    assert check.ok and "52.5 ms" in check.detail
    (missing,) = check_latency(step, None)
    assert not missing.ok
    assert check_latency(VerifyStep(), window) == []
