"""What the engine daemons and the kernel say on a host, read for verify: the daemons `up`
started there (from its journal) with their stats-file counters, and the conntrack counts.
Acting, thin; `labctl.verify.fetch` re-exports these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from labctl.hosts import daemons as dmn
from labctl.hosts import journal as jr
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Result, Transport
from labctl.verify import ledger as L

CONNTRACK = ("/proc/sys/net/netfilter/nf_conntrack_count",
             "/proc/sys/net/netfilter/nf_conntrack_max")
#: Seconds after which a stats file that was not rewritten means the daemon is hung.
STALE_AFTER = 10.0


def fetch_daemons(t: Transport, inv: Inventory, spec: HostSpec, now: float
                  ) -> list[L.DaemonStats]:
    """The engine daemons `up` started on this host (from its journal), with their counters."""
    return daemons_and(t, inv, spec, now)[0]


def daemons_and(t: Transport, inv: Inventory, spec: HostSpec, now: float,
                extra: Sequence[Sequence[str]] = ()
                ) -> tuple[list[L.DaemonStats], Optional[list[Result]]]:
    """`fetch_daemons`, and `extra` (read-only argvs) in the first daemon's round trip: their
    results, None when the host has no daemon to look at (the caller runs them)."""
    journal = jr.load_local(inv.lab, spec.name) or jr.read_remote(
        t, jr.journal_path(inv.remote_dir(spec)))
    live = [rec for rec in (journal.daemons if journal is not None else [])
            if not rec.stopped_at]
    out, more = [], None
    for i, rec in enumerate(live):
        look = dmn.observe(t, rec, extra=extra if i == 0 else ())
        more = look.extra if i == 0 else more
        out.append(daemon_stats(t, spec, rec, now, look))
    return out, more


def daemon_stats(t: Transport, spec: HostSpec, rec: jr.DaemonRecord, now: float,
                 look: Optional[dmn.Observed] = None) -> L.DaemonStats:
    if look is None:   # the stats, the pid file and its cmdline: one round trip
        look = dmn.observe(t, rec)
    stats, pid = look.stats, look.pid
    if stats is None:
        return L.DaemonStats(spec.name, rec.name, "missing", {},
                             detail=f"no stats file {rec.stats_file}")
    counters = {k: int(v) for k, v in (stats.get("counters") or {}).items()
                if isinstance(v, (int, float))}
    updated = stats.get("updated_at")
    state, detail = "running", ""
    if pid is None:
        state, detail = "down", f"process gone (stats say {stats.get('state', '?')})"
    elif isinstance(updated, (int, float)) and now - updated > STALE_AFTER:
        state, detail = "stale", f"stats not updated for {now - updated:.0f} s"
    started = stats.get("started_at")
    return L.DaemonStats(spec.name, rec.name, state, counters,
                         float(updated) if isinstance(updated, (int, float)) else None, detail,
                         float(started) if isinstance(started, (int, float)) else None)


def fetch_conntrack(t: Transport, spec: HostSpec) -> tuple[Optional[int], Optional[int]]:
    return parse_conntrack(t.run(["cat", *CONNTRACK]))


def parse_conntrack(res: Result) -> tuple[Optional[int], Optional[int]]:
    """(count, max) from `cat` of CONNTRACK (None, None when unreadable; pure)."""
    words = res.stdout.split()
    if len(words) != 2 or not all(w.isdigit() for w in words):
        return None, None
    return int(words[0]), int(words[1])
