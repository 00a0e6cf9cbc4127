"""Host basics: reachable, host keys checked, Python, root or sudo."""

from __future__ import annotations

from typing import Iterable

from labctl.facts import OperatorFacts
from labctl.inventory.models import Inventory
from labctl.model import Finding
from labctl.up.checks.base import (
    ERROR,
    WARN,
    Facts,
    reachable,
    unknown_fact,
)
from labctl.up.runtime import MIN_PYTHON


def check_reachable(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for hf in facts.values():
        if hf.unreachable is not None:
            yield Finding("host.unreachable", ERROR, hf.host, hf.unreachable,
                          hint="fix SSH access to this host (see the inventory's hosts section)")


def check_host_keys(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    """ssh.strict_host_key_checking: false is loud, per host: its key is not verified, so a
    man-in-the-middle could take the root session labctl opens."""
    if inv.ssh.strict_host_key_checking:
        return
    for spec in inv.all_hosts():
        jump = spec.jump if spec.jump is not None else inv.ssh.jump
        via = (f" (nor is its jump host {jump.address}'s)" if jump is not None and jump != "none"
               else "")
        yield Finding("ssh.host_key_unchecked", WARN, spec.name,
                      "ssh.strict_host_key_checking is false: this host's key is not "
                      f"checked{via}, "
                      "so anyone in the path could answer as it (and receive root commands)",
                      hint="put the keys in known_hosts (verify the fingerprints) and remove "
                           "strict_host_key_checking: false")


def check_python(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    for hf in reachable(facts):
        if hf.python is None:
            yield unknown_fact(hf.host, "python3", "python", hf)
        elif not hf.python.at_least(*MIN_PYTHON):
            yield Finding("python.missing", ERROR, hf.host,
                          f"python3 >= 3.9 is needed for the engine; found {hf.python}",
                          hint="install python3 (3.9 or newer) from the distribution")


def check_privilege(inv: Inventory, facts: Facts, op: OperatorFacts) -> Iterable[Finding]:
    sudo = {h.name: h.sudo for h in inv.all_hosts()}
    for hf in reachable(facts):
        if hf.privileged is None:
            yield unknown_fact(hf.host, "root/sudo", "uid", hf)
        elif not hf.privileged:
            yield Finding("privilege.missing", ERROR, hf.host,
                          "neither root nor passwordless sudo (`sudo -n true` failed)",
                          hint="connect as root, or allow NOPASSWD sudo and set sudo: true")
        elif hf.uid != 0 and not sudo.get(hf.host, False):
            yield Finding("privilege.missing", ERROR, hf.host,
                          f"the login user (uid {hf.uid}) is not root and the host has no "
                          "`sudo: true`: labctl's changes would fail",
                          hint="set sudo: true on this host (passwordless sudo works here), "
                               "or connect as root")
