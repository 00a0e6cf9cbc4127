"""The runtime checks (labctl.up.runtime): pypy3 asked for and present (or not), its memory cap,
--workers auto needs the CPU count."""

from __future__ import annotations

from typing import Any

from labctl.facts.system import PypyVersion, PythonVersion
from labctl.inventory.models import Inventory
from labctl.model import Severity
from labctl.up.checks import run_checks
from tests.unit.checks.fired import ids
from tests.unit.checks_facts import (
    healthy,
    inventory,
    operator,
    two_server,
    with_host,
)


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
    inv = engine_with(runtime="auto", memory_mb=192)
    facts = with_host(healthy(inv), "online1",
                      pypy=PypyVersion(True, PythonVersion(True, 3, 9, 16), "7.3.11"))
    found = [f for f in run_checks(inv, facts, operator()) if f.id == "runtime.memory"]
    assert ids(found) == {"runtime.memory"} and [f.host for f in found] == ["online1"]
    assert found[0].severity is Severity.WARN and "memory_mb 192" in found[0].message
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
