"""`status` and `down`: read and undo what `up` left on each host.

`down` per host: lock -> journal (the host's; else the local copy) -> disarm the dead-man ->
stop daemons gracefully (final stats kept) -> undo what the journal lists, newest first.
With no journal anywhere it removes what carries labctl's tags (proto 252 routes, the lab's
LABCTL-<lab> chains and the rules jumping to them). A second `down` finds nothing and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from labctl.errors import LabctlError
from labctl.facts.iptables import Ruleset, parse_iptables_save, rule_words
from labctl.hosts import daemons as dm
from labctl.hosts.journal import (
    Journal,
    LabRecord,
    host_dir,
    journal_path,
    load_local,
    load_record,
    read_remote,
    save_local,
    save_record,
)
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import CHAIN_PREFIX, ROUTE_PROTO, ChangeKind
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch
from labctl.transport.pool import Factory, HostPool, Watch
from labctl.up import deadman
from labctl.up.apply import HostRun, StepOutcome, save_probing, undo
from labctl.up.launch import key_path
from labctl.up.lock import lock_and_read, release_lock
from labctl.up.plan import chain_name
from labctl.up.trust import check_journal

TAGGED_ROUTES = ("ip", "-4", "route", "show", "table", "all", "proto", str(ROUTE_PROTO))


@dataclass
class HostStatus:
    host: str
    journal_state: str  # "none" when there is no journal
    run_id: str = ""
    entries: dict[str, int] = field(default_factory=dict)  # status -> count
    deadman_armed: bool = False
    #: "deadman" when the host's own timer rolled the changes back (labctl never confirmed)
    rolled_back_by: str = ""
    daemons: list[dm.DaemonStatus] = field(default_factory=list)
    tagged_routes: list[str] = field(default_factory=list)
    labctl_rules: list[str] = field(default_factory=list)
    error: str = ""
    #: online, assistant, target, or target (baseline|candidate) with several targets
    role: str = ""


def role_label(inv: Inventory, name: str) -> str:
    """The host's role as `status` shows it; a target of `hosts.targets` with its role."""
    try:
        role = inv.role_of(name)
    except KeyError:
        return ""
    if role == "target" and inv.hosts.targets is not None:
        return f"target ({inv.target_role(name)})"
    return role


@dataclass
class StatusReport:
    lab: str
    hosts: list[HostStatus]


@dataclass
class HostDown:
    host: str
    summary: str
    steps: list[StepOutcome] = field(default_factory=list)
    final_stats: dict[str, Any] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)


@dataclass
class DownReport:
    lab: str
    hosts: list[HostDown]

    @property
    def ok(self) -> bool:
        return all(not h.error and not h.leftovers for h in self.hosts)

    @property
    def noop(self) -> bool:
        return not any(h.changed for h in self.hosts)


# -- tags (pure parsing + argv) ---------------------------------------------------------------
def tagged_routes(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip()]


def labctl_rules(ruleset: Ruleset, lab: str) -> list[str]:
    return ruleset.labctl_objects(lab)


def sweep_iptables_argvs(ruleset: Ruleset, lab: str) -> list[list[str]]:
    """Argvs removing the lab's chain, jumps to it and rules tagged `labctl:<lab>:` (pure)."""
    chain = f"{CHAIN_PREFIX}{lab}"
    tag = f"labctl:{lab}:"
    deletes: list[list[str]] = []
    drops: list[list[str]] = []
    for table in ruleset.tables.values():
        for c in table.chains.values():
            if c.name == chain:
                drops += [["iptables", "-t", table.name, "-F", chain],
                          ["iptables", "-t", table.name, "-X", chain]]
                continue
            for rule in c.rules:
                words = rule_words(rule)
                jumps = any(w in ("-j", "-g") and i + 1 < len(words) and words[i + 1] == chain
                            for i, w in enumerate(words))
                if jumps or tag in rule:
                    deletes.append(["iptables", "-t", table.name, "-D", c.name, *words])
    return deletes + drops


# -- status -----------------------------------------------------------------------------------
def read_journal(t: Transport, inv: Inventory, name: str,
                 read: Optional[Result] = None) -> Optional[Journal]:
    """The host's journal (else the local copy), refused unless it fits what labctl could
    have written for this lab and host (`labctl.up.trust`). `read`: its `cat`, already run."""
    hdir = host_dir(inv.state_dir, inv.lab, name)
    chain = chain_name(inv)
    remote = check_journal(read_remote(t, journal_path(hdir), sudo=True, read=read), inv.lab,
                           name, hdir, chain, f"{journal_path(hdir)} on {name}")
    if remote is not None:
        return remote
    return check_journal(load_local(inv.lab, name), inv.lab, name, hdir, chain,
                         f"kept locally for {name}")


def host_status(t: Transport, inv: Inventory, spec: HostSpec) -> HostStatus:
    journal = read_journal(t, inv, spec.name)
    st = HostStatus(spec.name, journal.state if journal else "none",
                    role=role_label(inv, spec.name))
    if journal is not None:
        st.run_id = journal.run_id
        for e in journal.entries:
            st.entries[e.status] = st.entries.get(e.status, 0) + 1
        st.deadman_armed = deadman.is_armed(t, journal.deadman, sudo=True)
        st.rolled_back_by = journal.rolled_back_by
        st.daemons = [dm.status(t, rec) for rec in journal.daemons]
    res = t.run(list(TAGGED_ROUTES), sudo=True)
    st.tagged_routes = tagged_routes(res.stdout) if res.ok else []
    ipt = t.run(["iptables-save"], sudo=True)
    if ipt.ok:
        st.labctl_rules = labctl_rules(parse_iptables_save(ipt.stdout), inv.lab)
    return st


def status(inv: Inventory, factory: Optional[Factory] = None, parallel: Optional[int] = None,
           watch: Optional[Watch] = None) -> StatusReport:
    """Per host: journal state, dead-man, daemons (pid/uptime/counters), tagged routes/rules."""
    pool = HostPool(inv, factory, parallel, watch)
    try:
        outcomes = pool.each(lambda spec, t: host_status(t, inv, spec), phase="status")
    finally:
        pool.close()
    hosts = []
    for name, out in outcomes.items():
        if out.ok and out.value is not None:
            hosts.append(out.value)
        else:
            hosts.append(HostStatus(name, "unknown", role=role_label(inv, name),
                                    error=getattr(out.error, "message", str(out.error))))
    return StatusReport(inv.lab, hosts)


# -- down -------------------------------------------------------------------------------------
def down_host(t: Transport, inv: Inventory, spec: HostSpec) -> HostDown:
    hdir = host_dir(inv.state_dir, inv.lab, spec.name)
    notes, read = lock_and_read(t, hdir, journal_path(hdir))   # one round trip where it can
    try:
        journal = read_journal(t, inv, spec.name, read)
        if journal is None:
            return _sweep_tags(t, inv, spec.name, notes)
        return _down_journal(HostRun(spec.name, t, hdir, journal), inv)
    finally:
        release_lock(t, hdir)


def _down_journal(run: HostRun, inv: Inventory) -> HostDown:
    j = run.journal
    if j.deadman is not None and not j.deadman.confirmed_at:
        deadman.cancel(run.transport, j.deadman, sudo=True)
    running = [d for d in j.daemons if d.stopped_at is None]
    todo = j.in_place()
    if not todo and not running:
        summary = f"nothing to do: already down (journal state {j.state}"
        summary += ", undone by the dead-man timer)" if j.rolled_back_by else ")"
        if j.state not in ("down", "rolled_back"):  # an `up` killed before its first change:
            j.state = "down"                        # its journal must not block the next `up`
            run.save()
        return HostDown(run.name, summary, leftovers=_leftovers(run.transport, inv))
    for rec in running:  # a daemon journaled but not yet marked applied still gets stopped
        dm.stop(run.transport, rec)
    if not todo or todo[0].kind != ChangeKind.DAEMON.value:  # (else its undo saves it at once)
        save_probing(run, todo[0] if todo else None)  # each entry's probe with the journal
    for entry, then in zip(todo, [*todo[1:], None]):  # write before it (one round trip)
        undo(run, entry, then)
    # the journal; the channel key shipped with the daemons (it must not outlive the lab) and
    # a metrics file that dashboards would still read; what is left carrying labctl's tags:
    # one round trip
    gone = [key_path(inv, run.name)] if j.daemons else []
    gone += [m for m in (inv.engine.metrics_path(d.name, run.name) for d in j.daemons) if m]
    remove = [["rm", "-f", *gone]] if gone else []
    failed = [o for o in run.outcomes if o.status == "undo-failed"]
    j.state = "down" if not failed else "failed"
    left = run.save_then([*remove, list(TAGGED_ROUTES), ["iptables-save"]])[len(remove):]
    done = HostDown(run.name, f"undid {len(run.outcomes)} step(s)", steps=run.outcomes,
                    final_stats={d.name: d.final_stats for d in j.daemons if d.final_stats},
                    leftovers=_leftovers(run.transport, inv, left if len(left) == 2 else None))
    if failed:
        done.error = "; ".join(f"{o.step}: {o.reason}" for o in failed)
    return done


def _leftovers(t: Transport, inv: Inventory, read: Optional[list[Result]] = None) -> list[str]:
    """Anything still carrying labctl's tags (this lab's chains, any proto 252 route); `read`:
    TAGGED_ROUTES and `iptables-save`, already run."""
    argvs = [list(TAGGED_ROUTES), ["iptables-save"]]
    res, ipt = read or run_batch(t, argvs, sudo=True) or [t.run(a, sudo=True) for a in argvs]
    found = [f"route: {r}" for r in tagged_routes(res.stdout)] if res.ok else []
    if ipt.ok:
        found += labctl_rules(parse_iptables_save(ipt.stdout), inv.lab)
    return found


def _sweep_tags(t: Transport, inv: Inventory, name: str, notes: list[str]) -> HostDown:
    """No journal anywhere: remove what carries labctl's tags."""
    steps: list[StepOutcome] = []
    res = t.run(list(TAGGED_ROUTES), sudo=True)
    if res.ok and tagged_routes(res.stdout):
        flush = ["ip", "-4", "route", "flush", "table", "all", "proto", str(ROUTE_PROTO)]
        t.run(flush, sudo=True).check()
        steps.append(StepOutcome(name, "sweep:routes", "flush proto 252 routes", "undone"))
    ipt = t.run(["iptables-save"], sudo=True)
    if ipt.ok:
        for argv in sweep_iptables_argvs(parse_iptables_save(ipt.stdout), inv.lab):
            t.run(argv, sudo=True).check()
            steps.append(StepOutcome(name, "sweep:iptables", " ".join(argv[1:]), "undone"))
    summary = ("journal lost: removed what carries labctl's tags" if steps
               else "nothing to do: no journal and nothing tagged by labctl")
    return HostDown(name, summary, steps=steps, leftovers=_leftovers(t, inv))


def down(inv: Inventory, factory: Optional[Factory] = None, parallel: Optional[int] = None,
         watch: Optional[Watch] = None) -> DownReport:
    """Undo `up` on every host (in parallel, at most `parallel` at once); per-host outcomes,
    failures included."""
    pool = HostPool(inv, factory, parallel, watch)
    try:
        outcomes = pool.each(lambda spec, t: down_host(t, inv, spec), phase="down")
    finally:
        pool.close()
    hosts: list[HostDown] = []
    for name, out in outcomes.items():
        if out.ok and out.value is not None:
            hosts.append(out.value)
        else:
            err = out.error
            msg = err.message if isinstance(err, LabctlError) else str(err)
            hosts.append(HostDown(name, "failed", error=msg))
    report = DownReport(inv.lab, hosts)
    _mark_local(inv, report)
    return report


def _mark_local(inv: Inventory, report: DownReport) -> None:
    rec = load_record(inv.lab)
    if rec is not None and report.ok:
        save_record(LabRecord(**{**rec.__dict__, "state": "down", "updated_at": time.time()}))
    for h in report.hosts:
        j = load_local(inv.lab, h.host)
        if j is not None and not h.error and j.state not in ("down", "rolled_back"):
            j.state = "down"
            save_local(j)
