"""One stats document from the workers' documents (pure).

Counters are summed; gauges (``sessions_active``, ``clients``, ``routes`` …) are summed; the
tcpcopy channel list is merged by address (connections summed); the response-time summary
sums counts and buckets and takes the largest percentiles (an upper bound: exact percentiles
of the union are in the buckets). ``workers`` is N, ``per_worker`` lists each worker's pid,
state and counters.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from engine.stats import stats_document

SUMMED = ("sessions_active", "buffered_bytes", "clients", "authenticated_clients", "routes",
          "delayed")


def worker_path(path: str, index: int) -> str:
    """The stats file of worker ``index`` next to the merged one."""
    return f"{path}.w{index}"


def _sum_counters(docs: Sequence[Mapping[str, Any]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for d in docs:
        for name, value in (d.get("counters") or {}).items():
            if isinstance(value, (int, float)):
                out[name] = out.get(name, 0) + int(value)
    return out


def _intercepts(docs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    by_addr: Dict[str, Dict[str, Any]] = {}
    for d in docs:
        for item in d.get("intercepts") or []:
            addr = str(item.get("addr"))
            cur = by_addr.get(addr)
            if cur is None:
                by_addr[addr] = dict(item)
                continue
            cur["connections"] = int(cur.get("connections", 0)) + int(item.get("connections", 0))
            cur["authenticated"] = (bool(cur.get("authenticated"))
                                    and bool(item.get("authenticated")))
    return list(by_addr.values())


def _histogram(docs: Sequence[Mapping[str, Any]], key: str) -> Optional[Dict[str, Any]]:
    """One of the workers' histograms (``engine.latency.Histogram.summary``) merged: counts
    and buckets summed; percentiles, max and last the workers' highest (an upper bound)."""
    parts = [d[key] for d in docs if isinstance(d.get(key), dict)]
    if not parts:
        return None
    count = sum(int(p.get("count", 0)) for p in parts)
    total = sum(float(p.get("mean", 0.0)) * int(p.get("count", 0)) for p in parts)
    buckets: Dict[str, int] = {}
    for p in parts:
        for bound, n in (p.get("buckets") or {}).items():
            buckets[bound] = buckets.get(bound, 0) + int(n)
    out: Dict[str, Any] = {"count": count, "mean": round(total / count, 3) if count else 0.0,
                           "buckets": buckets}
    for name in ("p50", "p90", "p99", "max", "last"):
        if any(name in p for p in parts):
            out[name] = max((p.get(name) or 0) for p in parts)
    return out


def _select(docs: Sequence[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The selection report: the rules of the first worker, each rule's counts summed."""
    parts = [d["select"] for d in docs if isinstance(d.get("select"), dict)]
    if not parts:
        return None
    by_rule: Dict[str, Dict[str, int]] = {}
    for p in parts:
        for rule, counts in (p.get("by_rule") or {}).items():
            into = by_rule.setdefault(rule, {})
            for what, n in counts.items():
                into[what] = into.get(what, 0) + int(n)
    return {**parts[0], "by_rule": by_rule}


def merge_stats(tool: str, version: str, pid: int, started_at: float, updated_at: float,
                state: str, docs: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The merged document of ``docs`` (worker k's document at index k)."""
    extra: Dict[str, Any] = {"workers": len(docs)}
    for key in SUMMED:
        if any(key in d for d in docs):
            extra[key] = sum(int(d.get(key) or 0) for d in docs)
    if any("intercepts" in d for d in docs):
        extra["intercepts"] = _intercepts(docs)
    for key in ("target_response_ms", "copy_delay_ms"):
        histogram = _histogram(docs, key)
        if histogram is not None:
            extra[key] = histogram
    for key in ("listen", "netem"):                 # the same in every worker
        first = next((d[key] for d in docs if key in d), None)
        if first is not None:
            extra[key] = first
    select = _select(docs)
    if select is not None:
        extra["select"] = select
    if any("listen" in d for d in docs):
        extra["listens"] = [d.get("listen") for d in docs]
    extra["per_worker"] = [
        {"worker": k, "pid": d.get("pid"), "state": d.get("state"),
         "updated_at": d.get("updated_at"), "counters": d.get("counters") or {}}
        for k, d in enumerate(docs)]
    return stats_document(tool, version, pid, started_at, updated_at, state,
                          _sum_counters(docs), **extra)
