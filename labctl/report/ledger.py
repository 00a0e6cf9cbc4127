"""A verify ledger (`LedgerReport`) as tables of strings, for the drill and verify reports."""

from __future__ import annotations

from typing import Any

from labctl.report.render import num, pct
from labctl.verify.ledger import LedgerReport

ENGINE_KEYS = ("captured", "kernel_drops", "malformed", "sampled_out", "sessions_created",
               "sessions_shed", "sessions_no_synack", "sessions_no_intercept",
               "sessions_held", "sessions_resumed", "sessions_hold_expired",
               "target_stalled", "sessions_stall_shed",
               "sessions_timeout", "requests_sent",
               "send_errors", "retransmit", "reconnect", "channel_reconnects", "resp_routed",
               "resp_unrouted", "clients_accepted")


def verdict_word(r: LedgerReport) -> str:
    """PASS, FAIL, or INCONCLUSIVE (the ledger could not be computed as configured)."""
    if r.verdict.passed:
        return "PASS"
    return "INCONCLUSIVE" if r.verdict.inconclusive else "FAIL"


def ledger_view(r: LedgerReport) -> dict[str, Any]:
    """The verify ledger as tables of strings (pure)."""
    hosts = ", ".join(f"{h} {n}" for h, n in r.online_by_host.items())
    summary = [
        ("online requests", f"{r.online_requests} ({hosts})" if hosts else str(
            r.online_requests)),
        ("target requests", f"{r.target_requests} (matched {r.target_matched}, unmatched "
                            f"{r.target_excess}, foreign {r.leaks})"),
        ("expected ratio", f"{r.expected_ratio:.4f} ({r.expected_requests:.0f} copies)"),
        ("copy ratio", num(r.copy_ratio, 4)),
        ("loss / excess", f"{pct(r.loss_pct)} / {pct(r.excess_pct)}"),
        ("tolerance", f"±{r.verdict.tolerance:.4f}"),
    ]
    if r.selection is not None:
        s = r.selection
        summary.insert(1, ("selection", f"selected {s.selected} of {r.online_requests} online "
                                        f"requests ({s.filtered} filtered by the selection)"))
    att = r.attribution
    attribution = [(b.name, str(b.requests), b.evidence) for b in att.buckets]
    attribution.append(("unexplained", str(att.unexplained),
                        "no counter accounts for these" if att.unexplained else ""))
    codes = sorted(set(r.status_online) | set(r.status_target))
    status = [(str(c), str(r.status_online.get(c, 0)), str(r.status_target.get(c, 0)))
              for c in codes]
    latency = [(p, num(getattr(r.latency_online, p)), num(getattr(r.latency_target, p)),
                num(getattr(r.latency_diff, p))) for p in ("p50", "p90", "p99")]
    engine = []
    for d in r.daemons:
        figures = ", ".join(f"{k}={d.counters[k]}" for k in ENGINE_KEYS if k in d.counters)
        engine.append((d.host, d.tool + (" (since the mark)" if d.baseline_at is not None else ""),
                       d.state, figures or d.detail))
    for c in r.conntrack:
        engine.append((c.host, "conntrack", pct(c.used_pct), f"now {c.count}/{c.max}"))
    endpoints = [(e.endpoint, str(e.online), str(e.target), str(e.missing), pct(e.loss_pct))
                 for e in r.worst_endpoints]
    return {"summary": summary, "missing": att.missing, "attribution": attribution,
            "status": status, "latency": latency, "engine": engine, "endpoints": endpoints,
            "passed": r.verdict.passed, "verdict": verdict_word(r),
            "reasons": list(r.verdict.reasons),
            "notes": list(r.notes)}
