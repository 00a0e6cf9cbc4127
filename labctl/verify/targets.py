"""Several targets (`hosts.targets`): one loss ledger per target, online vs that target (pure).

Every target receives a copy of every selected online request, so each target's ledger is the
single-target ledger with that target's records. The engine daemons are shared: tcpcopy counts
the copies of all targets together. Counters about what was captured from the clients (kernel
drops, client SYNs, sampling, sessions refused before any copy was made) hold for each target
as they are; counters about copies (sessions created, requests sent, timeouts, send errors,
intercept's routed responses) are split evenly across the targets, so each ledger's attribution
is an estimate, and says so in a note. The overall verdict passes only if every target's does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.verify import ledger as L
from labctl.verify.logparse import LogRecord

#: tcpcopy counters that count captured client packets or connections, once for all targets.
PER_CLIENT = frozenset({
    "captured", "kernel_drops", "malformed", "frag", "filtered", "clt_syn", "clt_con_retrans",
    "clt_gap", "clt_no_session", "clt_rst_ignored", "sampled_out", "sessions_no_intercept",
    "table_full", "memory_shed", "requests_selected", "requests_skipped",
})


@dataclass(frozen=True)
class TargetLedger:
    """One target's ledger: its inventory name, role (baseline|candidate|plain), address."""

    name: str
    role: str
    address: str
    report: L.LedgerReport


@dataclass(frozen=True)
class TargetsReport:
    """Every target's ledger (inventory order) and the overall verdict."""

    targets: list[TargetLedger]

    @property
    def verdict(self) -> L.Verdict:
        """PASS only if every target passes; reasons name their target. INCONCLUSIVE when a
        target is inconclusive and none failed outright."""
        failed = [t for t in self.targets if not t.report.verdict.passed]
        reasons = [f"target {t.name}: {r}" for t in failed for r in t.report.verdict.reasons]
        inconclusive = bool(failed) and all(t.report.verdict.inconclusive for t in failed)
        tolerance = max((t.report.verdict.tolerance for t in self.targets), default=0.0)
        return L.Verdict(not failed, reasons, tolerance, inconclusive)

    def only(self, name: str) -> TargetsReport:
        return TargetsReport([t for t in self.targets if t.name == name])


@dataclass(frozen=True)
class TargetInput:
    name: str
    role: str
    address: str
    records: Sequence[LogRecord]


def share(daemons: Sequence[L.DaemonStats], targets: int) -> list[L.DaemonStats]:
    """The daemons with their per-copy counters divided evenly among `targets` (rounded)."""
    if targets <= 1:
        return list(daemons)
    out = []
    for d in daemons:
        counters = {k: v if d.tool == "tcpcopy" and k in PER_CLIENT else round(v / targets)
                    for k, v in d.counters.items()}
        out.append(dataclasses.replace(d, counters=counters))
    return out


def build_all(base: L.LedgerInput, targets: Sequence[TargetInput],
              th: L.Thresholds = L.Thresholds()) -> TargetsReport:
    """One ledger per target from `base` (online records, daemons, conntrack of every host):
    the target's records, its own conntrack beside the online hosts', and with several
    targets the daemons' per-copy counters shared out (see `share`)."""
    names = {t.name for t in targets}
    daemons = share(base.daemons, len(targets))
    notes = list(base.notes)
    if len(targets) > 1 and any(d.counters for d in base.daemons):
        notes.append(f"engine counters are shared by {len(targets)} targets: per-copy counters "
                     "are split evenly, so this target's attribution is an estimate")
    out = []
    for t in targets:
        conntrack = [c for c in base.conntrack if c.host == t.name or c.host not in names]
        inp = dataclasses.replace(base, target=t.records, daemons=daemons, conntrack=conntrack,
                                  notes=notes, target_address=t.address)
        out.append(TargetLedger(t.name, t.role, t.address, L.build(inp, th)))
    return TargetsReport(out)
