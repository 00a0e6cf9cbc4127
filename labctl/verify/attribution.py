"""Where missing copies went (pure): the ledger's attribution of missing requests to capture,
the target's own failures (refused, reset, errors), session emulation or the path, from the
engine daemons' counters (the rules are in labctl.verify.ledger's docstring). Re-exported by
labctl.verify.ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from labctl.verify.types import Attribution, Bucket, DaemonStats


def counter_sum(daemons: Sequence[DaemonStats], tool: str, *names: str) -> Optional[int]:
    """Sum of the named counters over every daemon of `tool`; None when no daemon has any."""
    found = [d.counters[n] for d in daemons if d.tool == tool for n in names if n in d.counters]
    return sum(found) if found else None


def _take(buckets: list[Bucket], remaining: int, name: str, evidence: int,
          why: str) -> int:
    n = min(remaining, max(evidence, 0))
    if n > 0:
        buckets.append(Bucket(name, n, why))
    return remaining - n


def _merge(buckets: list[Bucket]) -> list[Bucket]:
    """One bucket per name (the target's refusals before sending and its errors after), in
    the order the names first appear."""
    out: dict[str, Bucket] = {}
    for b in buckets:
        got = out.get(b.name)
        out[b.name] = b if got is None else Bucket(b.name, got.requests + b.requests,
                                                   f"{got.evidence}; {b.evidence}")
    return list(out.values())


def attribute(missing: int, daemons: Sequence[DaemonStats], matched: int,
              target_errors: int, target_slow: bool,
              targets: Sequence[str] = ()) -> Attribution:
    """Split `missing` requests into capture / target / session / path / unexplained.

    The target's own failures are named apart from the copy path: sessions it refused (a RST
    to the copied SYN: nothing listens on `targets`, or a REJECT), sessions it reset midway,
    and the copies it answered with errors."""
    tc = "tcpcopy"
    drops = (counter_sum(daemons, tc, "kernel_drops") or 0) + (
        counter_sum(daemons, tc, "malformed") or 0)
    shed = counter_sum(daemons, tc, "sessions_shed") or 0
    no_synack = counter_sum(daemons, tc, "sessions_no_synack") or 0
    refused = counter_sum(daemons, tc, "sessions_refused") or 0
    resets = counter_sum(daemons, tc, "target_resets") or 0
    # sessions tcpcopy could not open because no intercept channel was up (intercept outage)
    no_icpt = counter_sum(daemons, tc, "sessions_no_intercept") or 0
    # sessions held through an outage (-L) that outlasted tcpcopy's --hold-timeout
    expired = counter_sum(daemons, tc, "sessions_hold_expired") or 0
    timeouts = counter_sum(daemons, tc, "sessions_timeout") or 0
    # connections not copied and sessions shed while the target answered nothing
    # (tcpcopy --target-stall-s): the target's silence, not the copy path
    stalled = (counter_sum(daemons, tc, "target_stalled") or 0) + (
        counter_sum(daemons, tc, "sessions_stall_shed") or 0)
    send_errors = counter_sum(daemons, tc, "send_errors") or 0
    unrouted = counter_sum(daemons, "intercept", "resp_unrouted") or 0
    sent = counter_sum(daemons, tc, "requests_sent")
    cap_why = f"tcpcopy kernel_drops+malformed={drops}"
    where = " on " + ", ".join(targets) if targets else ""
    refused_why = (f"the target refused the copies: sessions_refused={refused} (a RST to "
                   f"the SYN: nothing listens{where}, or a firewall REJECT)") + (
        f"; the target stopped answering: connections not copied + sessions shed={stalled} "
        f"(--target-stall-s)" if stalled else "")
    ses_why = f"sessions shed={shed}, no SYN-ACK={no_synack}, timed out={timeouts}" + (
        f", no intercept connected={no_icpt}" if no_icpt else "") + (
        f", held past --hold-timeout={expired}" if expired else "")
    buckets: list[Bucket] = []
    if sent is None:
        left = _take(buckets, missing, "capture", drops, cap_why)
        left = _take(buckets, left, "target", refused + stalled, refused_why)
        left = _take(buckets, left, "session", shed + no_synack + timeouts + no_icpt + expired,
                     ses_why)
        left = _take(buckets, left, "path", send_errors + unrouted,
                     f"send errors={send_errors}, responses not routed back={unrouted}")
        return Attribution(missing, _merge(buckets), left)
    pre = min(missing, max(0, missing - max(0, sent - matched)))
    post = missing - pre
    left = _take(buckets, pre, "capture", drops, cap_why)
    left = _take(buckets, left, "target", refused + stalled, refused_why)
    left = _take(buckets, left, "session", shed + no_synack + timeouts + no_icpt + expired,
                 ses_why)
    unexplained = left
    slow = timeouts if target_slow else 0
    left = _take(buckets, post, "target", target_errors + slow + resets,
                 f"copies answered 5xx/408/499={target_errors}"
                 + (f", reset by the target midway={resets}" if resets else "")
                 + (f", timeouts while the target was slow={timeouts}" if slow else ""))
    _take(buckets, left, "path", left,
          f"sent by tcpcopy={sent} but never logged by the target; send errors="
          f"{send_errors}, responses not routed back={unrouted}")
    return Attribution(missing, _merge(buckets), unexplained)
