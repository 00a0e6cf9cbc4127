"""Preflight checks: pure functions of (inventory, facts, operator facts) -> findings.

Each finding has a stable id (listed in CHECK_IDS), a severity, a message, a fix hint, and
`refusal=True` when it protects the operator's SSH access (`--force` never skips those).
Facts that could not be gathered produce a WARN "could not check" finding instead of silence.
Fixes that labctl can make itself (`--fix`) are exposed as Changes by `fix_changes`.

`base` (the facts' type, severities, finding helpers), `hosts` (reachable, host keys, Python,
privilege), `kernel` (ip_forward, conntrack, rp_filter), `routes` (the client route, on-link),
`service` (pool, DROP rule, the copied service, intercept's port, data link, OUTPUT rules);
`labctl.up.runtime` and `labctl.up.statedir` hold their own checks.
"""

from __future__ import annotations

from typing import Callable, Iterable

from labctl.facts import OperatorFacts
from labctl.inventory.models import Inventory
from labctl.model import Change, Finding
from labctl.up.checks.base import ERROR, INFO, WARN, Facts
from labctl.up.checks.hosts import check_host_keys, check_privilege, check_python, check_reachable
from labctl.up.checks.kernel import check_conntrack, check_ip_forward, check_rp_filter
from labctl.up.checks.routes import check_client_route, check_on_link
from labctl.up.checks.service import (
    check_datalink,
    check_drop_rule,
    check_intercept_port,
    check_output_rules,
    check_pool,
    check_service,
    check_target_listens,
)
from labctl.up.plan import fix_changes_for
from labctl.up.runtime import check_runtime
from labctl.up.statedir import check_state_dir

CHECK_IDS = (
    "host.unreachable", "facts.unknown", "python.missing", "privilege.missing",
    "assistant.ip_forward", "conntrack.absent", "conntrack.usage", "conntrack.headroom",
    "target.rp_filter", "route.operator", "route.inventory_host", "route.gateway", "route.wide",
    "route.exists", "assistant.off_link", "pool.real_clients", "pool.inventory_host",
    "pool.unrouted", "drop.ssh_port", "service.unreachable", "intercept.port_busy",
    "datalink.mac_unknown", "target.not_listening", "online.output_refuses",
    "runtime.unavailable", "runtime.memory", "ssh.host_key_unchecked", "state_dir.unsafe",
    "privilege.sudo_command",  # labctl.up.sudo: needs the plan, so it runs after these
)


def run_checks(inventory: Inventory, facts: Facts, operator: OperatorFacts) -> list[Finding]:
    """Every preflight finding, errors first (stable order within a severity)."""
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(check(inventory, facts, operator))
    order = {ERROR: 0, WARN: 1, INFO: 2}
    return sorted(findings, key=lambda f: (order[f.severity], not f.refusal))


_CHECKS: tuple[Callable[[Inventory, Facts, OperatorFacts], Iterable[Finding]], ...] = (
    check_reachable, check_host_keys, check_python, check_privilege, check_ip_forward,
    check_conntrack, check_rp_filter, check_client_route, check_on_link, check_pool,
    check_drop_rule, check_service, check_target_listens, check_intercept_port, check_datalink,
    check_output_rules, check_runtime, check_state_dir,
)


def refusals(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.refusal]


def blocking(findings: Iterable[Finding], force: bool = False,
             strict: bool = False) -> list[Finding]:
    """Findings that stop `up`: every error (with --strict every warning too), or with
    --force only the refusals."""
    return [f for f in findings
            if f.refusal or ((f.blocks or (strict and f.severity is WARN)) and not force)]


def fix_changes(inventory: Inventory, facts: Facts, findings: Iterable[Finding]) -> list[Change]:
    """The Changes `--fix` would add for fixable findings (ip_forward, rp_filter, conntrack)."""
    return fix_changes_for(inventory, facts, {f.id for f in findings})
