"""What every check module shares: the facts' type, severities, and the finding helpers."""

from __future__ import annotations

import ipaddress
from typing import Iterable, Mapping, Optional

from labctl.facts import HostFacts
from labctl.model import Finding, Severity

Facts = Mapping[str, HostFacts]
Net = ipaddress.IPv4Network
IPv4 = ipaddress.IPv4Address
ERROR, WARN, INFO = Severity.ERROR, Severity.WARN, Severity.INFO

#: Narrowest prefix length allowed for a routed client network (wider is refused).
MIN_CLIENT_PREFIX = 16


def unknown_fact(host: str, what: str, fact: str, hf: Optional[HostFacts]) -> Finding:
    """The WARN "could not check" finding of a fact that could not be gathered."""
    why = hf.unknown.get(fact, "not gathered") if hf else "no facts"
    return Finding("facts.unknown", WARN, host, f"could not check {what}: {why}",
                   hint="install the missing tool or grant access, then run again")


def reachable(facts: Facts) -> Iterable[HostFacts]:
    return (hf for hf in facts.values() if hf.unreachable is None)


def refusal(check_id: str, host: str, message: str, hint: str) -> Finding:
    """An ERROR that protects the operator's SSH access (`--force` never skips it)."""
    return Finding(check_id, ERROR, host, message, hint=hint, refusal=True)
