"""Which interpreter and how many workers each engine daemon gets (pure: inventory + facts).

- `engine.runtime: auto` runs a daemon under pypy3 where its host has a pypy3 implementing
  Python >= 3.9 (the `pypy` fact, `pypy3 --version`), else under python3; `python3` and `pypy3`
  are taken as asked. pypy3 asked for but absent (or too old) is a preflight error naming the
  host: labctl never installs anything on a host.
- `engine.workers: N` gives every daemon N workers; `auto` gives each the CPU count of its own
  host (the `cpus` fact, `nproc`), at most AUTO_WORKERS_MAX. tcpcopy also needs the intercept
  host's count (`--intercept-workers`): intercept with N workers listens on ports P..P+N-1.

PyPy's resident size is several times CPython's (lab: tcpcopy ~100-145 MB under pypy3 with the
4 MB nursery the engine gives itself, 260 MB peak before it; 24-28 MB under python3), and
tcpcopy sheds sessions while its RSS exceeds `engine.memory_mb`: tcpcopy under pypy3 with
memory_mb below PYPY_MIN_MEMORY_MB is the warning `runtime.memory`.

`resolve(inv, host, facts)` is used both by the preflight check (`check_runtime`, findings) and
by the daemon plan (labctl.up.launch, which refuses when a choice cannot be made).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

from labctl.facts import HostFacts, OperatorFacts
from labctl.inventory.engine_options import AUTO_WORKERS_MAX
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import Finding, Severity

Facts = Mapping[str, HostFacts]
MIN_PYTHON = (3, 9)  # the engine's oldest Python, for python3 (checks.py) and pypy3 alike
PYTHON3, PYPY3 = "python3", "pypy3"
#: tcpcopy's -m (engine.memory_mb) under which PyPy's own footprint would trigger shedding.
PYPY_MIN_MEMORY_MB = 256
WORKERS_HINT = "set engine.workers to a number, or make `nproc` answer on the host"
PYPY_HINT = ("install pypy3 on the host yourself (Debian/Ubuntu: apt-get install pypy3; "
             "labctl never installs anything), or set engine.runtime: auto or python3")


@dataclass(frozen=True)
class HostEngine:
    """The interpreter and worker count of the daemon(s) on one host; None = cannot be chosen
    from these facts (then `problems` says why, one line each)."""

    host: str
    runtime: Optional[str]
    workers: Optional[int]
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def daemon_hosts(inv: Inventory) -> list[HostSpec]:
    """Hosts that run an engine daemon: the intercept host, then every online host."""
    return [inv.intercept_host, *inv.hosts.online]


def _runtime(inv: Inventory, hf: Optional[HostFacts]) -> tuple[Optional[str], list[str],
                                                                list[str]]:
    """(choice, problems, notes) for engine.runtime on one host."""
    asked = inv.engine.runtime
    if asked == PYTHON3:
        return PYTHON3, [], []
    pypy = hf.pypy if hf is not None else None
    if pypy is None:
        why = hf.unknown.get("pypy", "not gathered") if hf is not None else "no facts"
        if asked == PYPY3:
            return None, [f"engine.runtime: pypy3, but whether pypy3 is installed is unknown "
                          f"({why})"], []
        return PYTHON3, [], [f"engine.runtime: auto chose python3 (pypy3 unknown: {why})"]
    if pypy.at_least(*MIN_PYTHON):
        return PYPY3, [], []
    found = "is not installed" if not pypy.present else (
        f"is {pypy}, but the engine needs Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]}")
    if asked == PYPY3:
        return None, [f"engine.runtime: pypy3, but pypy3 {found}"], []
    return PYTHON3, [], []


def _workers(inv: Inventory, hf: Optional[HostFacts]) -> tuple[Optional[int], list[str]]:
    asked = inv.engine.workers
    if asked != "auto":
        return int(asked), []
    cpus = hf.cpus if hf is not None else None
    if cpus is None:
        why = hf.unknown.get("cpus", "not gathered") if hf is not None else "no facts"
        return None, [f"engine.workers: auto, but the CPU count is unknown ({why})"]
    return min(cpus, AUTO_WORKERS_MAX), []


def resolve(inv: Inventory, host: str, facts: Facts) -> HostEngine:
    """The runtime and workers of the daemon(s) on `host`."""
    hf = facts.get(host)
    runtime, problems, notes = _runtime(inv, hf)
    workers, more = _workers(inv, hf)
    return HostEngine(host, runtime, workers, tuple(problems + more), tuple(notes))


def hint_for(problem: str) -> str:
    return PYPY_HINT if problem.startswith("engine.runtime") else WORKERS_HINT


def check_runtime(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    """`runtime.unavailable` (ERROR): engine.runtime or engine.workers cannot be honoured on a
    daemon host; `facts.unknown` (WARN) when auto fell back to python3 for want of the fact;
    `runtime.memory` (WARN): tcpcopy would run under pypy3 with too small an engine.memory_mb."""
    online = {h.name for h in inv.hosts.online}
    for spec in daemon_hosts(inv):
        hf = facts.get(spec.name)
        if hf is None or hf.unreachable:
            continue
        chosen = resolve(inv, spec.name, facts)
        for problem in chosen.problems:
            yield Finding("runtime.unavailable", Severity.ERROR, spec.name, problem,
                          hint=hint_for(problem))
        for note in chosen.notes:
            yield Finding("facts.unknown", Severity.WARN, spec.name, note,
                          hint="make `pypy3 --version` answer, or set engine.runtime")
        mb = inv.engine.memory_mb
        if spec.name in online and chosen.runtime == PYPY3 and mb < PYPY_MIN_MEMORY_MB:
            yield Finding("runtime.memory", Severity.WARN, spec.name,
                          f"tcpcopy would run under pypy3 with engine.memory_mb {mb}: PyPy "
                          f"alone takes about 250 MB resident, and tcpcopy sheds sessions "
                          f"above memory_mb", hint=f"raise engine.memory_mb to at least "
                          f"{PYPY_MIN_MEMORY_MB}, or set engine.runtime: python3")
