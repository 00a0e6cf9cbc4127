"""The transport interface: run an argv on a host and get a `Result` value back.

Commands are argv lists, never shell strings; quoting happens once, at the transport edge.
Commands are privileged by default (`sudo=True`): on a `sudo: true` host with a non-root user
they run through `sudo -n --`, so a call site cannot forget it; the few that must run as the
login user (facts such as `id -u`, private temp files) say `sudo=False`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

from labctl.errors import RemoteError

TAIL_LINES = 20
#: Exit code of a command that exceeded its timeout (as coreutils `timeout` reports it).
TIMEOUT_EXIT = 124


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


@dataclass(frozen=True)
class Result:
    """What a command did: its argv, host, exit code and full output."""

    host: str
    argv: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def timed_out(self) -> bool:
        return self.exit_code == TIMEOUT_EXIT

    def check(self) -> Result:
        """Return self when the command succeeded, else raise CommandFailed with evidence."""
        if not self.ok:
            raise CommandFailed(self)
        return self


class CommandFailed(RemoteError):
    """A remote command exited non-zero; names the host, the argv and the output tails."""

    def __init__(self, result: Result, hint: Optional[str] = None):
        argv = " ".join(result.argv)
        detail = _tail(result.stderr) or _tail(result.stdout) or "(no output)"
        super().__init__(
            f"`{argv}` exited {result.exit_code}: {detail}", hint=hint, host=result.host
        )
        self.result = result


class ConnectionLost(RemoteError):
    """The link to a host dropped (as opposed to a command failing on a live link)."""


class Transport(Protocol):
    """One host's command channel. Implementations: `ssh.SSHTransport`, `fake.FakeTransport`."""

    host: str

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        timeout: Optional[float] = None,
        stdin: Optional[str] = None,
    ) -> Result:
        """Run argv (as root: directly, or through `sudo -n` when `wants_sudo(sudo)`); never
        raises on a non-zero exit (call `.check()`), raises on a lost link."""
        ...

    def wants_sudo(self, sudo: bool) -> bool:
        """Whether a command run with this `sudo` flag goes through `sudo -n --` here."""
        ...

    def put(self, local_path: str, remote_path: str, mode: int = 0o644) -> None:
        """Copy a local file to the host, owned by root (through sudo where needed)."""
        ...

    def get(self, remote_path: str, local_path: str) -> None:
        """Copy a file from the host (one only root may read as well)."""
        ...

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        ...


@dataclass
class CallLog:
    """Every argv a transport ran, in order; tests assert on it (e.g. only read-only commands)."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
