"""Plan: desired state vs facts -> ordered, tagged, idempotent Changes per host (pure).

Order: sysctl fixes (`--fix`), NOTRACK rules (conntrack.notrack), then the guarded changes that
could cut a host off: each target's client route (three-server) or the online hosts' DROP rules
(two-server). With several targets (`hosts.targets`) every target gets what a single one gets.
Daemons are added by `labctl.up.run`, right after the channel rule (`channel_changes`: only the
online hosts may reach intercept's port on its host). Every change has an exact undo and a
read-only probe whose exit 0 means "already in place".

Tags: routes carry `proto 252`; iptables rules live in chain `LABCTL-<lab>` (raw table for
NOTRACK, filter table for DROP) and carry `-m comment --comment labctl:<lab>:<step>`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

from labctl.facts import HostFacts
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import ROUTE_PROTO, Argv, Change, ChangeKind, Plan
from labctl.up.engine_args import select_summary
from labctl.up.findings import host_list

IPT = ("iptables", "-w")
#: `python3 -c NONEMPTY argv...`: runs argv (read-only listing), exit 0 iff it printed something.
NONEMPTY = (
    "import subprocess,sys\n"
    "p=subprocess.run(sys.argv[1:],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL)\n"
    "sys.exit(0 if p.returncode==0 and p.stdout.strip() else 1)\n"
)
MAX_CHAIN = 28

Facts = Mapping[str, HostFacts]


@dataclass(frozen=True)
class PlanOptions:
    fix: bool = False
    #: None: use the inventory's conntrack.notrack
    notrack: Optional[bool] = None


def make_plan(inventory: Inventory, facts: Facts, options: Optional[PlanOptions] = None, *,
              fix: Optional[bool] = None, notrack: Optional[bool] = None) -> Plan:
    """Every change of an `up` in execution order, plus notes on what needs nothing."""
    opts = options or PlanOptions()
    fix = opts.fix if fix is None else fix
    notrack = opts.notrack if notrack is None else notrack
    if notrack is None:
        notrack = inventory.conntrack.notrack
    changes: list[Change] = []
    notes: list[str] = []
    if fix:
        changes += fix_sysctls(inventory, facts, notes)
    if notrack:
        for spec in [*inventory.hosts.online, *inventory.targets]:
            changes += notrack_changes(inventory, spec)
    if inventory.topology == "three-server":
        changes += route_changes(inventory, facts, notes)
    else:
        notes.append("two-server: no route on the target; replies are dropped on the online "
                     "hosts by a DROP rule")
        for spec in inventory.hosts.online:
            changes += drop_changes(inventory, spec)
    if inventory.engine.select is not None:
        notes.append(select_summary(inventory.engine.select))
    return Plan(inventory.lab, tuple(changes), tuple(notes))


def chain_name(inventory: Inventory) -> str:
    name = inventory.chain
    assert len(name) <= MAX_CHAIN, name  # lab names are at most 16 characters
    return name


def comment(inventory: Inventory, step: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", f"labctl:{inventory.lab}:{step}")


# -- sysctl fixes ----------------------------------------------------------------------------
def sysctl_change(host: str, step: str, key: str, want: int, old: int, why: str) -> Change:
    path = "/proc/sys/" + key.replace(".", "/")
    return Change(
        host=host, step=step, kind=ChangeKind.SYSCTL,
        description=f"set {key}={want} (was {old}): {why}",
        apply=(("sysctl", "-w", f"{key}={want}"),),
        undo=(("sysctl", "-w", f"{key}={old}"),),
        probe=("grep", "-qx", str(want), path),
        noop_reason=f"{key} is already {want}",
    )


def fix_sysctls(inventory: Inventory, facts: Facts, notes: list[str]) -> list[Change]:
    out: list[Change] = []
    assistant = inventory.hosts.assistant
    af = facts.get(assistant.name) if assistant else None
    if assistant and af and af.ip_forward is not None:
        if af.ip_forward != 0:
            out.append(sysctl_change(assistant.name, "ip_forward", "net.ipv4.ip_forward", 0,
                                     af.ip_forward, "the assistant must not forward replies"))
        else:
            notes.append(f"{assistant.name}: ip_forward is already 0")
    for spec in inventory.targets:
        out += _rp_filter_fix(spec.name, facts, notes)
    return out


def _rp_filter_fix(target: str, facts: Facts, notes: list[str]) -> list[Change]:
    tf = facts.get(target)
    if tf is None or tf.proc is None or tf.ifname is None:
        return []
    out = []
    for name in ("all", tf.ifname):
        old = tf.proc.rp_filter.get(name)
        if old:
            out.append(sysctl_change(target, f"rp_filter-{name}",
                                     f"net.ipv4.conf.{name}.rp_filter", 0, old,
                                     "copied packets from fake clients must not be dropped"))
    if not out:
        notes.append(f"{target}: rp_filter is already 0 on all and {tf.ifname}")
    return out


def fix_changes_for(inventory: Inventory, facts: Facts, finding_ids: set[str]) -> list[Change]:
    """The changes `--fix` adds for these finding ids (see labctl.up.checks.fix_changes)."""
    notes: list[str] = []
    out: list[Change] = []
    for change in fix_sysctls(inventory, facts, notes):
        if change.step == "ip_forward" and "assistant.ip_forward" in finding_ids:
            out.append(change)
        if change.step.startswith("rp_filter") and "target.rp_filter" in finding_ids:
            out.append(change)
    if finding_ids & {"conntrack.usage", "conntrack.headroom"}:
        for spec in [*inventory.hosts.online, *inventory.targets]:
            out += notrack_changes(inventory, spec)
    return out


# -- iptables chains and rules -----------------------------------------------------------------
def chain_change(inventory: Inventory, host: str, table: str, hooks: Iterable[str],
                 step: str, insert: bool = False) -> Change:
    """Create LABCTL-<lab> in `table` and jump to it from each hook; undo: flush, unhook, delete."""
    chain = chain_name(inventory)
    tagged = comment(inventory, step)
    hooks = tuple(hooks)
    jumps = [(h, (*tagged, "-j", chain)) for h in hooks]
    add = "-I" if insert else "-A"
    apply: list[Argv] = [(*IPT, "-t", table, "-N", chain)]
    apply += [(*IPT, "-t", table, add, h, *rule) for h, rule in jumps]
    undo: list[Argv] = [(*IPT, "-t", table, "-F", chain)]
    undo += [(*IPT, "-t", table, "-D", h, *rule) for h, rule in jumps]
    undo.append((*IPT, "-t", table, "-X", chain))
    first_hook, first_rule = jumps[0]
    return Change(
        host=host, step=step, kind=ChangeKind.IPTABLES,
        description=f"create chain {chain} in {table}, jumped to from {', '.join(hooks)}",
        apply=tuple(apply), undo=tuple(undo),
        probe=(*IPT, "-t", table, "-C", first_hook, *first_rule),
        noop_reason=f"chain {chain} is already hooked into {table}",
    )


def rule_change(inventory: Inventory, host: str, table: str, step: str,
                match: tuple[str, ...], target: str, description: str,
                guarded: bool = False) -> Change:
    chain = chain_name(inventory)
    rule = (*match, *comment(inventory, step), "-j", target)
    return Change(
        host=host, step=step, kind=ChangeKind.IPTABLES, description=description,
        apply=((*IPT, "-t", table, "-A", chain, *rule),),
        undo=((*IPT, "-t", table, "-D", chain, *rule),),
        probe=(*IPT, "-t", table, "-C", chain, *rule),
        noop_reason=f"the rule is already in {table}/{chain}", guarded=guarded,
    )


def notrack_changes(inventory: Inventory, spec: HostSpec) -> list[Change]:
    """raw-table NOTRACK for the copied ports on an online host or the target."""
    role = inventory.role_of(spec.name)
    ports = sorted({s.port if role == "online" else s.target_port for s in inventory.services})
    out = [chain_change(inventory, spec.name, "raw", ("PREROUTING", "OUTPUT"), "notrack-chain")]
    for port in ports:
        for direction in ("--dport", "--sport"):
            out.append(rule_change(
                inventory, spec.name, "raw", f"notrack-{port}{direction[1:3]}",
                ("-p", "tcp", direction, str(port)), "NOTRACK",
                f"do not conntrack tcp {direction[2:]} {port}"))
    if role == "online":
        # tcpcopy's own packets to the target (raw socket, OUTPUT) must not fill the table either.
        for s, target, taddr in inventory.copy_destinations():
            tport = s.target_port
            step = (f"notrack-copy-{tport}" if len(inventory.targets) == 1
                    else f"notrack-copy-{target.name}-{tport}")
            out.append(rule_change(
                inventory, spec.name, "raw", step,
                ("-d", f"{taddr}/32", "-p", "tcp", "--dport", str(tport)), "NOTRACK",
                f"do not conntrack copies to {taddr}:{tport}"))
    return _unique(out)


def drop_changes(inventory: Inventory, spec: HostSpec) -> list[Change]:
    """two-server: drop the target's replies on an online host (the seed's iptables rule)."""
    out = [chain_change(inventory, spec.name, "filter", ("INPUT",), "drop-chain", insert=True)]
    for s, _, taddr in inventory.copy_destinations():    # two-server: one target
        out.append(rule_change(
            inventory, spec.name, "filter", f"drop-{s.target_port}",
            ("-s", f"{taddr}/32", "-p", "tcp", "--sport", str(s.target_port)), "DROP",
            f"drop replies from {taddr}:{s.target_port} (they belong to copied sessions)",
            guarded=True))
    return _unique(out)


def channel_changes(inventory: Inventory, workers: int = 1) -> list[Change]:
    """Only the online hosts may reach intercept's channel port(s) (P..P+workers-1) on its host:
    one RETURN per online host (back to INPUT, so the host's own rules still apply to them),
    then a DROP for every other source. The hook is inserted first in INPUT: an ACCEPT of the
    host's own cannot let a stranger through."""
    host = inventory.intercept_host.name
    port = inventory.intercept.port
    last = port + max(workers, 1) - 1
    dport = ("-p", "tcp", "--dport", str(port) if last == port else f"{port}:{last}")
    shown = str(port) if last == port else f"{port}-{last}"
    out = [chain_change(inventory, host, "filter", ("INPUT",), "channel-chain", insert=True)]
    out.append(_sources_change(inventory, host, dport, shown))
    names = host_list([h.name for h in inventory.hosts.online])
    out.append(rule_change(
        inventory, host, "filter", "channel-drop", dport, "DROP",
        f"drop every other source on intercept's channel port {shown} (only {names} may "
        "connect)"))
    return out


def _sources_change(inventory: Inventory, host: str, dport: tuple[str, ...],
                    shown: str) -> Change:
    """One RETURN rule per online host, as one step (one command, however many hosts: a fleet's
    `up` and `down` do not pay a round trip per online host on the critical path). iptables
    expands `-s A,B,...` into a rule per address; `-C` with the list finds them all or fails;
    the undo deletes each rule on its own, so one removed by hand does not keep the others."""
    chain = chain_name(inventory)
    step = "channel-from-online"
    online = inventory.hosts.online
    tail = (*dport, *comment(inventory, step), "-j", "RETURN")
    sources = list(dict.fromkeys(f"{h.address}/32" for h in online))
    every = ("-s", ",".join(sources), *tail)
    who = (f"{online[0].name} ({online[0].address})" if len(online) == 1 else
           f"the {len(online)} online hosts ({host_list([h.name for h in online])})")
    return Change(
        host=host, step=step, kind=ChangeKind.IPTABLES,
        description=f"let {who} reach intercept's channel port {shown}",
        apply=((*IPT, "-t", "filter", "-A", chain, *every),),
        undo=tuple((*IPT, "-t", "filter", "-D", chain, "-s", src, *tail) for src in sources),
        probe=(*IPT, "-t", "filter", "-C", chain, *every),
        noop_reason=f"the rules are already in filter/{chain}",
    )


def _unique(changes: list[Change]) -> list[Change]:
    seen: set[tuple[str, str]] = set()
    out = []
    for c in changes:
        if (c.host, c.step) not in seen:
            seen.add((c.host, c.step))
            out.append(c)
    return out


# -- the client route (three-server) -----------------------------------------------------------
def route_change(host: str, net: ipaddress.IPv4Network, via: ipaddress.IPv4Address) -> Change:
    spec = (str(net), "via", str(via), "proto", str(ROUTE_PROTO))
    show = ("ip", "route", "show", "table", "main", "exact", str(net), "via", str(via),
            "proto", str(ROUTE_PROTO))
    return Change(
        host=host, step=f"route-{net}", kind=ChangeKind.ROUTE,
        description=f"route {net} via the assistant {via} (replies to fake clients)",
        apply=(("ip", "route", "add", *spec),),
        undo=(("ip", "route", "del", *spec),),
        probe=("python3", "-c", NONEMPTY, *show),
        noop_reason=f"route {net} via {via} proto {ROUTE_PROTO} is already present",
        guarded=True,
    )


def route_changes(inventory: Inventory, facts: Facts, notes: list[str]) -> list[Change]:
    """The client networks via the assistant, on every target (inventory order)."""
    out = []
    for spec in inventory.targets:
        out += _target_routes(inventory, spec.name, facts, notes)
    return out


def _target_routes(inventory: Inventory, target: str, facts: Facts,
                   notes: list[str]) -> list[Change]:
    assistant = inventory.hosts.assistant
    assert assistant is not None  # three-server inventories always have one
    tf = facts.get(target)
    out = []
    for net in inventory.clients.networks:
        out.append(route_change(target, net, assistant.address))
        if tf is not None and tf.routes is not None and any(
            r.table == "main" and r.dst == net and r.gateway == assistant.address
            and r.proto_number == ROUTE_PROTO for r in tf.routes
        ):
            notes.append(f"{target}: route {net} via {assistant.address} is already in place "
                         "(no-op)")
    return out
