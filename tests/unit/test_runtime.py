"""engine.runtime and engine.workers: the interpreter and worker flags of each daemon, chosen
from facts (pure), shown by `plan`, recorded in the journal and a saved plan, reported by
`status`."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from labctl.cli.render import ops as render
from labctl.errors import LabctlError
from labctl.facts import HostFacts, PypyVersion, PythonVersion
from labctl.hosts import daemons as dm
from labctl.hosts.journal import Journal
from labctl.inventory.models import Inventory
from labctl.model import Change, Plan
from labctl.plain import plain
from labctl.transport.fake import FakeTransport
from labctl.up import saved_plan
from labctl.up.down import HostStatus, StatusReport
from labctl.up.launch import daemon_changes, record_of
from tests.unit.checks_facts import ROOT, healthy, inventory

PYPY = PypyVersion(True, PythonVersion(True, 3, 9, 16), "7.3.11")


def engine_with(**keys: Any) -> Inventory:
    inv = inventory()
    return inv.model_copy(update={"engine": inv.engine.model_copy(update=keys)})


def with_host(facts: dict[str, HostFacts], host: str, **changes: Any) -> dict[str, HostFacts]:
    return {**facts, host: dataclasses.replace(facts[host], **changes)}


def by_name(changes: list[Change]) -> dict[str, Change]:
    return {c.daemon.name: c for c in changes if c.daemon is not None}


def interpreter(change: Change) -> str:
    """The program that runs the engine in a launch argv (after systemd-run's own flags)."""
    argv = list(change.apply[0])
    pyz = next(i for i, a in enumerate(argv) if a.endswith("/labctl-engine.pyz"))
    return argv[pyz - 1]


def test_auto_runs_pypy3_only_where_the_host_has_it() -> None:
    inv = engine_with(runtime="auto")
    facts = with_host(healthy(inv), "online1", pypy=PYPY)
    d = by_name(daemon_changes(inv, facts))
    assert interpreter(d["tcpcopy"]) == "pypy3" and interpreter(d["intercept"]) == "python3"
    assert d["tcpcopy"].apply[0][0] == "systemd-run"  # healthy(): the hosts run systemd
    assert d["tcpcopy"].daemon is not None and d["tcpcopy"].daemon.runtime == "pypy3"
    assert record_of(d["tcpcopy"]).runtime == "pypy3"
    assert record_of(d["intercept"]).runtime == "python3"


def test_detach_runs_under_python3_and_the_daemon_under_the_chosen_interpreter() -> None:
    # detach only forks and execs: python3 (on every host) starts in a fraction of PyPy's time
    inv = engine_with(runtime="pypy3")
    facts = {n: dataclasses.replace(hf, systemd=False, pypy=PYPY if hf.pypy else None)
             for n, hf in healthy(inv).items()}
    for change in daemon_changes(inv, facts):
        argv = list(change.apply[0])
        assert argv[:2] == ["python3", argv[1]] and argv[2] == "detach"
        inner = argv[argv.index("--") + 1:]
        assert inner[0] == "pypy3"


def test_python3_is_taken_as_asked_even_where_pypy3_exists() -> None:
    inv = engine_with(runtime="python3")
    facts = {n: dataclasses.replace(hf, pypy=PYPY) for n, hf in healthy(inv).items()}
    assert {interpreter(c) for c in daemon_changes(inv, facts)} == {"python3"}


def test_pypy3_absent_refuses_to_build_the_daemon_naming_the_host() -> None:
    inv = engine_with(runtime="pypy3")
    facts = with_host(healthy(inv), "assistant", pypy=PYPY)
    with pytest.raises(LabctlError) as err:
        daemon_changes(inv, facts)
    assert err.value.host == "online1" and "pypy3 is not installed" in err.value.message
    assert "never installs" in (err.value.hint or "")


def test_one_worker_passes_no_worker_flag() -> None:
    """engine.workers: 1 (the default) leaves the daemons' argv exactly as before."""
    for inv in (inventory(), engine_with(workers=1)):
        for change in daemon_changes(inv, healthy(inv)):
            assert change.daemon is not None and change.daemon.workers == 1
            assert "--workers" not in change.apply[0]
            assert "--intercept-workers" not in change.apply[0]
    default = [c.apply for c in daemon_changes(inventory(), healthy(inventory()))]
    one = engine_with(workers=1)
    assert [c.apply for c in daemon_changes(one, healthy(one))] == default


def _flags(args: tuple[str, ...], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_n_workers_go_to_both_daemons() -> None:
    inv = engine_with(workers=4)
    d = by_name(daemon_changes(inv, healthy(inv)))
    tcpcopy, intercept = d["tcpcopy"].daemon, d["intercept"].daemon
    assert tcpcopy is not None and intercept is not None
    assert _flags(tcpcopy.args, "--workers") == ["4"]
    assert _flags(tcpcopy.args, "--intercept-workers") == ["4"]
    assert _flags(intercept.args, "--workers") == ["4"]
    assert _flags(intercept.args, "--intercept-workers") == []
    assert tcpcopy.workers == intercept.workers == 4


def test_workers_auto_is_each_hosts_cpu_count_capped_at_16() -> None:
    inv = engine_with(workers="auto")
    facts = with_host(with_host(healthy(inv), "online1", cpus=1), "assistant", cpus=48)
    d = by_name(daemon_changes(inv, facts))
    tcpcopy, intercept = d["tcpcopy"].daemon, d["intercept"].daemon
    assert tcpcopy is not None and intercept is not None
    assert _flags(tcpcopy.args, "--workers") == []            # one CPU: one worker, no flag
    assert _flags(tcpcopy.args, "--intercept-workers") == ["16"]
    assert _flags(intercept.args, "--workers") == ["16"]
    with pytest.raises(LabctlError, match="CPU count is unknown"):
        daemon_changes(inv, with_host(facts, "assistant", cpus=None))


def _text(renderable: Any) -> str:
    buf = io.StringIO()
    Console(file=buf, width=250, color_system=None).print(renderable)
    return buf.getvalue()


def test_plan_shows_runtime_and_workers_per_daemon() -> None:
    inv = engine_with(workers=2)
    facts = with_host(healthy(inv), "online1", pypy=PYPY)
    text = _text(render.plan_table(Plan(inv.lab, tuple(daemon_changes(inv, facts)))))
    assert "start tcpcopy under pypy3, 2 workers" in text
    assert "start intercept under python3, 2 workers" in text


def test_status_reports_the_runtime_from_the_journal() -> None:
    inv = inventory()
    facts = with_host(healthy(inv), "online1", pypy=PYPY)
    rec = record_of(by_name(daemon_changes(inv, facts))["tcpcopy"])
    fake = FakeTransport("online1")
    fake.on(["cat", rec.pid_file], stdout="4242\n")
    fake.on(["cat", "/proc/4242/cmdline"], stdout=f"pypy3\0x.pyz\0tcpcopy\0{rec.stats_file}\0")
    fake.on(["cat", rec.stats_file], stdout=json.dumps({"counters": {"captured": 3}}))
    st = dm.status(fake, rec)
    assert st.alive and st.runtime == "pypy3" and st.workers == 1
    report = StatusReport(inv.lab, [HostStatus("online1", "up", daemons=[st])])
    assert plain(report)["hosts"][0]["daemons"][0]["runtime"] == "pypy3"  # status --json
    assert "pypy3" in _text(render.status_renderable(report))


def test_a_journal_of_an_older_labctl_reads_as_python3() -> None:
    inv = inventory()
    rec = record_of(by_name(daemon_changes(inv, healthy(inv)))["intercept"])
    journal = Journal(lab=inv.lab, host="assistant", run_id="r1", daemons=[rec])
    raw = json.loads(journal.to_json())
    for d in raw["daemons"]:
        del d["runtime"], d["workers"]
    old = Journal.from_json(json.dumps(raw))
    assert old.daemons[0].runtime == "python3" and old.daemons[0].workers == 1


def test_a_saved_plan_goes_stale_when_pypy3_disappears(tmp_path: Path) -> None:
    inv = engine_with(runtime="auto")
    text = (ROOT / "inventories/staging.yaml").read_text()
    with_pypy = with_host(healthy(inv), "online1", pypy=PYPY)
    plan = Plan(inv.lab, tuple(daemon_changes(inv, with_pypy)))
    path = str(tmp_path / "plan.json")
    saved_plan.save(path, plan, "staging.yaml", text, fix=False)
    saved = saved_plan.load(path)
    assert saved_plan.differences(saved, inv.lab, text, plan) == []
    now = Plan(inv.lab, tuple(daemon_changes(inv, healthy(inv))))
    diffs = saved_plan.differences(saved, inv.lab, text, now)
    assert any(d.startswith("changed [online1] daemon:tcpcopy: daemon.runtime: \"pypy3\" -> "
                            "\"python3\"") for d in diffs), diffs
