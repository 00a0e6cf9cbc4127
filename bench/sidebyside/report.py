"""Means per scenario and side, ratios ours/theirs, and the printed tables."""

from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional

SIDES = ("ours", "theirs")
#: (key in the summary, how a run's row gives it, label)
METRICS = (
    ("online_rate", lambda r: r.get("online_rate"), "online req/s"),
    ("fidelity", lambda r: r.get("fidelity"), "fidelity"),
    ("trail_s", lambda r: r.get("trail_s"), "trail s"),
    ("drops_tcpcopy", lambda r: r.get("kernel_drops", {}).get("tcpcopy"), "drops tc"),
    ("drops_intercept", lambda r: r.get("kernel_drops", {}).get("intercept"), "drops ic"),
    ("cpu_tcpcopy_per_10k", lambda r: r.get("cpu_s_per_10k", {}).get("tcpcopy"), "tc s/10k"),
    ("cpu_intercept_per_10k", lambda r: r.get("cpu_s_per_10k", {}).get("intercept"), "ic s/10k"),
    ("sys_tcpcopy_per_10k", lambda r: r.get("sys_s_per_10k", {}).get("tcpcopy"), "tc sys/10k"),
    ("sys_intercept_per_10k", lambda r: r.get("sys_s_per_10k", {}).get("intercept"),
     "ic sys/10k"),
    ("wait_tcpcopy_s", lambda r: r.get("run_delay_s", {}).get("tcpcopy"), "tc wait s"),
    ("wait_intercept_s", lambda r: r.get("run_delay_s", {}).get("intercept"), "ic wait s"),
    ("rss_tcpcopy_mb", lambda r: r.get("rss_mb", {}).get("tcpcopy"), "tc RSS MB"),
    ("rss_intercept_mb", lambda r: r.get("rss_mb", {}).get("intercept"), "ic RSS MB"),
)
LATENCY = ("p50", "p99", "p99.9")


def mean(values: List[Any]) -> Optional[float]:
    nums = [float(v) for v in values if v is not None]
    return round(statistics.fmean(nums), 4) if nums else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def summarize(runs: List[Dict[str, Any]], names: List[str]) -> Dict[str, Any]:
    """{scenario: {ours: {metric: mean}, theirs: {...}, ratio: {metric: ours/theirs}, runs: n}}."""
    out: Dict[str, Any] = {}
    for name in names:
        entry: Dict[str, Any] = {}
        for side in SIDES:
            rows = [r for r in runs if r["scenario"] == name and r["side"] == side]
            if rows:
                entry[side] = {key: mean([get(r) for r in rows]) for key, get, _ in METRICS}
                entry[side]["runs"] = len(rows)
        if "ours" in entry and "theirs" in entry:
            entry["ratio"] = {key: ratio(entry["ours"][key], entry["theirs"][key])
                              for key, _, _ in METRICS}
        out[name] = entry
    return out


def latency(runs: List[Dict[str, Any]], names: List[str]) -> Dict[str, Any]:
    """{scenario: {off|ours|theirs: {p50, p99, p99.9 (ms, mean over rounds)}}} for the paced
    scenarios (the generator measures each request)."""
    out: Dict[str, Any] = {}
    for name in names:
        entry = {}
        for side in ("off", *SIDES):
            lats = [r["client"].get("latency_ms") for r in runs
                    if r["scenario"] == name and r["side"] == side]
            lats = [x for x in lats if x]
            if lats:
                entry[side] = {q: mean([x.get(q) for x in lats]) for q in LATENCY}
        if entry:
            out[name] = entry
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(summary: Dict[str, Any], lat: Dict[str, Any]) -> str:
    heads = [label for _, _, label in METRICS]
    lines = [f"{'scenario':<15}{'side':<13}" + "".join(f"{h:>13}" for h in heads)]
    for name, entry in summary.items():
        for side in (*SIDES, "ratio"):
            if side in entry:
                label = "ours/theirs" if side == "ratio" else side
                lines.append(f"{name:<15}{label:<13}" + "".join(
                    f"{fmt(entry[side].get(key)):>13}" for key, _, _ in METRICS))
    if lat:
        lines.append("")
        lines.append(f"{'online latency ms':<26}" + "".join(f"{q:>10}" for q in LATENCY))
        for name, entry in lat.items():
            for side, qs in entry.items():
                copier = {"off": "copier off", "ours": "ours", "theirs": "theirs (C)"}[side]
                lines.append(f"{name + ', ' + copier:<26}" + "".join(
                    f"{fmt(qs.get(q)):>10}" for q in LATENCY))
    return "\n".join(lines)
