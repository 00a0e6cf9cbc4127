"""One exception root for everything labctl reports to a user, and the stable exit codes."""

from __future__ import annotations

import enum
from typing import Optional


class ExitCode(enum.IntEnum):
    """Exit codes documented in the README. Scripts rely on them; never renumber."""

    OK = 0
    ERROR = 1
    USAGE = 2
    VERIFY_FAILED = 3
    DRILL_FAILED = 4
    INTERRUPTED = 130


class LabctlError(Exception):
    """An error a user can act on: what failed, where, and a hint how to fix it."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: Optional[str] = None, host: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.host = host

    def render(self) -> str:
        """One readable block: `error: [host] message` then `hint: ...`."""
        where = f"[{self.host}] " if self.host else ""
        text = f"error: {where}{self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class UsageError(LabctlError):
    """Bad input from the user: an inventory, a runbook, a flag. Exit 2, nothing touched."""

    exit_code = ExitCode.USAGE


class InventoryError(UsageError):
    """An inventory that does not validate; the message names file, line and field."""


class PreflightRefused(LabctlError):
    """Preflight checks found errors; no change was made."""


class RemoteError(LabctlError):
    """A command on a host failed; carries the argv and the tails of its output."""


class LabError(LabctlError):
    """The local namespace lab could not be built, inspected or torn down."""


class VerifyFailed(LabctlError):
    """The loss ledger's verdict did not hold."""

    exit_code = ExitCode.VERIFY_FAILED


class BrokenLinkFound(LabctlError):
    """`labctl diagnose` found a broken link of the copy path: exit 3, like a failed verify."""

    exit_code = ExitCode.VERIFY_FAILED


class DrillFailed(LabctlError):
    """A drill runbook's expectations did not hold."""

    exit_code = ExitCode.DRILL_FAILED


class CompareFailed(LabctlError):
    """`labctl compare` flagged a regression of the candidate (or could judge nothing):
    exit 3, like a verify whose verdict did not hold."""

    exit_code = ExitCode.VERIFY_FAILED
