"""Seams for fault-injection tests of `up`, passed in as an object (`UpOptions.hooks`).

Production code calls `hooks.after(step)` at every checkpoint of `up` (the step names are listed
in docs/operations.md: connect, facts, checks, plan, lock, ship, journal, deadman,
applied:<step>, change:<step>, changes, daemon:<name>, daemons, confirm, state) and asks
`hooks.allow_ssh_cut` before it lets a refusal that protects SSH through. `NO_HOOKS` does
nothing and allows nothing; labctl never builds anything else itself. Tests pass `KillAfter`
(SIGKILL the process right after a step, to prove that `down` recovers from any point) or
`Hooks(allow_ssh_cut=True)` (to prove the dead-man timer restores a cut SSH path), e.g. through
`tests/integration/hooked_labctl.py`, which runs the real CLI with such an object.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable


class Hooks:
    """No-op hooks: what labctl uses. Tests construct them with `allow_ssh_cut=True`, or use a
    subclass that acts in `after`."""

    def __init__(self, allow_ssh_cut: bool = False) -> None:
        #: Let the refusals that protect SSH through (only to prove the dead-man timer works).
        self.allow_ssh_cut = allow_ssh_cut

    def after(self, step: str) -> None:
        """Called right after `step` completed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(allow_ssh_cut={self.allow_ssh_cut})"


NO_HOOKS = Hooks()


def _sigkill_self() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfter(Hooks):
    """SIGKILL this process right after `step` (as an operator's `kill -9` or a crash would)."""

    def __init__(self, step: str, kill: Callable[[], None] = _sigkill_self,
                 allow_ssh_cut: bool = False) -> None:
        super().__init__(allow_ssh_cut)
        self.step = step
        self.kill = kill

    def after(self, step: str) -> None:
        if step == self.step:
            self.kill()
