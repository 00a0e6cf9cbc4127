"""Host basics: python3 (and pypy3), identity and sudo, systemd, the SSH connection, iptables
flavour, the CPU count."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

from labctl.facts.base import NOT_FOUND, Fact, FactParseError, require_ok, to_int
from labctl.transport.base import Result

_PY_RE = re.compile(r"Python (\d+)\.(\d+)(?:\.(\d+))?")
_PYPY_RE = re.compile(r"\[PyPy (\d[\w.+~-]*)")
_IPT_RE = re.compile(r"iptables v(\S+)(?: \((\w[\w-]*)\))?")


@dataclass(frozen=True)
class PythonVersion:
    """`present=False` when python3 is not installed."""

    present: bool
    major: int = 0
    minor: int = 0
    micro: int = 0

    def at_least(self, major: int, minor: int) -> bool:
        return self.present and (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}" if self.present else "absent"


def parse_python(result: Result) -> PythonVersion:
    if result.exit_code == NOT_FOUND:
        return PythonVersion(present=False)
    text = require_ok(result)
    m = _PY_RE.search(text + result.stderr)  # Python < 3.4 printed the version on stderr
    if not m:
        raise FactParseError(f"no 'Python X.Y' in {text.strip()[:60]!r}")
    return PythonVersion(True, int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


@dataclass(frozen=True)
class PypyVersion:
    """`pypy3 --version`: the Python language level it implements and PyPy's own version;
    `present=False` when pypy3 is not installed."""

    present: bool
    python: PythonVersion = PythonVersion(False)
    pypy: str = ""

    def at_least(self, major: int, minor: int) -> bool:
        return self.present and self.python.at_least(major, minor)

    def __str__(self) -> str:
        return f"PyPy {self.pypy} (Python {self.python})" if self.present else "absent"


def parse_pypy(result: Result) -> PypyVersion:
    """`pypy3 --version` prints `Python 3.9.16 (7.3.11+dfsg-...)` then `[PyPy 7.3.11 ...]`."""
    if result.exit_code == NOT_FOUND:
        return PypyVersion(present=False)
    text = require_ok(result) + result.stderr
    python = parse_python(result)
    m = _PYPY_RE.search(text)
    if not m:
        raise FactParseError(f"no '[PyPy X.Y]' in {text.strip()[:80]!r} (is pypy3 PyPy?)")
    return PypyVersion(True, python, m.group(1))


def parse_cpus(result: Result) -> int:
    """`nproc`: the CPUs this host's processes may run on (>= 1)."""
    count = to_int(require_ok(result), "nproc")
    if count < 1:
        raise FactParseError(f"nproc: expected a positive count, got {count}")
    return count


def parse_uid(result: Result) -> int:
    return to_int(require_ok(result), "id -u")


def parse_exit_zero(result: Result) -> bool:
    """True when the command exited 0 (sudo -n true, test -d ...), False otherwise."""
    return result.ok


@dataclass(frozen=True)
class SSHConnection:
    """The operator's address and the host's address as the host sees this SSH session."""

    client: ipaddress.IPv4Address | ipaddress.IPv6Address
    client_port: int
    server: ipaddress.IPv4Address | ipaddress.IPv6Address
    server_port: int


def parse_ssh_connection(result: Result) -> Optional[SSHConnection]:
    """`printenv SSH_CONNECTION`: "CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT"; None if unset."""
    if result.exit_code == 1 and not result.stdout.strip():
        return None
    parts = require_ok(result).split()
    if len(parts) != 4:
        raise FactParseError(f"expected 4 words in SSH_CONNECTION, got {result.stdout.strip()!r}")
    try:
        return SSHConnection(
            ipaddress.ip_address(parts[0].split("%")[0]), int(parts[1]),
            ipaddress.ip_address(parts[2].split("%")[0]), int(parts[3]),
        )
    except ValueError as exc:
        raise FactParseError(f"SSH_CONNECTION: {exc}") from None


@dataclass(frozen=True)
class IptablesVersion:
    present: bool
    version: str = ""
    backend: str = ""  # "nf_tables" | "legacy" | "" (old versions print no backend)


def parse_iptables_version(result: Result) -> IptablesVersion:
    if result.exit_code == NOT_FOUND:
        return IptablesVersion(present=False)
    m = _IPT_RE.search(require_ok(result))
    if not m:
        raise FactParseError(f"no 'iptables vX' in {result.stdout.strip()[:60]!r}")
    return IptablesVersion(True, m.group(1), m.group(2) or "")


PYTHON = Fact("python", ("python3", "--version"), parse_python)
PYPY = Fact("pypy", ("pypy3", "--version"), parse_pypy)
CPUS = Fact("cpus", ("nproc",), parse_cpus)
UID = Fact("uid", ("id", "-u"), parse_uid)
SUDO = Fact("sudo", ("sudo", "-n", "true"), parse_exit_zero)
SYSTEMD = Fact("systemd", ("test", "-d", "/run/systemd/system"), parse_exit_zero)
SSH_CONNECTION = Fact("ssh_connection", ("printenv", "SSH_CONNECTION"), parse_ssh_connection)
IPTABLES_VERSION = Fact("iptables_version", ("iptables", "-V"), parse_iptables_version, sudo=True)
