"""Sudo rights, checked before any change (`privilege.sudo_command`).

On a `sudo: true` host whose login user is not root, every privileged command runs as
`sudo -n -- PROGRAM ...` (labctl.transport), so each program labctl will run there must be
allowed without a password; a program that is not would otherwise fail halfway through `up`.
`programs` lists them per host (pure: the plan's own argvs plus labctl's housekeeping),
`ask` runs `sudo -n -l PROGRAM` for each (one round trip, as the login user; exit 0 when sudo
would run it; `id -un` names the user), `findings` names every refused program with the host (pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

from labctl.errors import LabctlError
from labctl.facts import HostFacts
from labctl.hosts.supervision import HOST_PYTHON
from labctl.inventory.models import HostSpec, Inventory
from labctl.model import Finding, Plan, Severity
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_batch
from labctl.transport.pool import HostPool

CHECK_ID = "privilege.sudo_command"

#: What labctl runs through sudo on every host it changes, whatever the plan: the lock, the
#: engine and journal uploads (install + mv), the snapshots and `down`'s sweep (ip,
#: iptables-save, iptables), daemon start/readiness/stop (rm, cat, ss, tail, kill), the
#: dead-man's confirm (touch), the liveness check (true), `verify`'s log reads (stat, tail) and
#: the journal and lock-owner writes (sh: `umask 077 && cat > tmp && mv -f tmp file`, one round
#: trip, labctl.transport.textfile).
HOUSEKEEPING = ("cat", "install", "ip", "iptables", "iptables-save", "kill", "mkdir", "mv",
                "rm", "sh", "sha256sum", "ss", "stat", "tail", "touch", "true")
#: The dead-man timer: a transient systemd timer, or the engine's detached rollback.
DEADMAN_SYSTEMD = ("systemd-run", "systemctl")
DEADMAN_DETACHED = (HOST_PYTHON,)


def needs_sudo(spec: HostSpec, hf: Optional[HostFacts]) -> bool:
    """Whether this host's commands go through sudo and can be asked about (pure): `sudo: true`,
    a non-root login (uid != 0), reachable, and `sudo -n true` worked (else privilege.missing
    says so already)."""
    if not spec.sudo or hf is None or hf.unreachable is not None:
        return False
    return hf.uid is not None and hf.uid != 0 and bool(hf.sudo)


def programs(plan: Plan, host: str, systemd: bool) -> list[str]:
    """Every program labctl may run through sudo on `host` for this plan (pure, sorted)."""
    names = set(HOUSEKEEPING)
    changes = plan.for_host(host)
    for change in changes:
        for argv in (*change.apply, *change.undo, *((change.probe,) if change.probe else ())):
            if argv:
                names.add(argv[0])
    if any(c.guarded for c in changes):
        names.update(DEADMAN_SYSTEMD if systemd else DEADMAN_DETACHED)
    if systemd and any(c.daemon is not None for c in changes):
        names.add("systemctl")
    return sorted(names)


def list_argv(program: str) -> list[str]:
    return ["sudo", "-n", "-l", program]


WHOAMI = ("id", "-un")


def ask(transport: Transport, names: Sequence[str]) -> tuple[str, dict[str, Result]]:
    """The login user's name (it may come from the ssh config) and `sudo -n -l NAME` for each
    name, as that user (one round trip when possible)."""
    argvs = [list(WHOAMI), *(list_argv(n) for n in names)]
    results = run_batch(transport, argvs, sudo=False)
    if results is None:
        results = [transport.run(a, sudo=False) for a in argvs]
    user = results[0].stdout.strip() if results[0].ok else ""
    return user, dict(zip(names, results[1:]))


def findings(host: str, user: str, answers: Mapping[str, Result]) -> list[Finding]:
    """One ERROR naming the host, the user and every program sudo refused (pure)."""
    refused = sorted(name for name, res in answers.items() if not res.ok)
    if not refused:
        return []
    why = next((_reason(answers[n]) for n in refused if _reason(answers[n])), "")
    shown = ", ".join(f"`{n}`" for n in refused)
    return [Finding(
        CHECK_ID, Severity.ERROR, host,
        f"user {user!r} may not run {shown} through `sudo -n` (`sudo -n -l "
        f"{refused[0]}`: {why or 'not allowed'}); labctl runs these here as root",
        hint=f"allow them without a password in /etc/sudoers.d (e.g. `{user} ALL=(root) "
             "NOPASSWD: ALL`; the command list is in docs/operations.md, \"Non-root users "
             "with sudo\"), or log in as root")]


#: sudo's warnings that say nothing about the rights (a host whose own name does not
#: resolve gets this on every sudo call).
_NOISE = ("sudo: unable to resolve host",)


def _reason(res: Result) -> str:
    """What sudo said about the refusal; "" when it said nothing (denied rights print none)."""
    lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines()
             if ln.strip() and not ln.strip().startswith(_NOISE)]
    return lines[-1][:120] if lines else ""


def check(inv: Inventory, plan: Plan, facts: Mapping[str, HostFacts],
          pool: HostPool) -> list[Finding]:
    """The sudo rights of every sudo host, asked in parallel (read-only)."""
    def one(spec: HostSpec, t: Transport) -> list[Finding]:
        hf = facts.get(spec.name)
        if not needs_sudo(spec, hf):
            return []
        names = programs(plan, spec.name, bool(hf and hf.systemd))
        user, answers = ask(t, names)
        return findings(spec.name, user or spec.user, answers)

    out: list[Finding] = []
    for name, outcome in pool.each(one).items():
        if outcome.ok and outcome.value is not None:
            out += outcome.value
        else:
            err = outcome.error
            reason = err.message if isinstance(err, LabctlError) else str(err)
            out.append(Finding(CHECK_ID, Severity.ERROR, name,
                               f"could not ask sudo which commands it allows: {reason}",
                               hint="check that `sudo -n -l` works for the login user"))
    return out


def sorted_findings(found: Iterable[Finding]) -> list[Finding]:
    """Errors first, refusals first within them (the order `run_checks` gives)."""
    order = {Severity.ERROR: 0, Severity.WARN: 1, Severity.INFO: 2}
    return sorted(found, key=lambda f: (order[f.severity], not f.refusal))
