"""Files to and from a host over SFTP (labctl.transport.ssh's `put` and `get`).

As root: `upload` writes a temporary name next to the destination, chmod-ed to its mode before
the first byte, and renames it over the destination.

Through sudo (a non-root login on a `sudo: true` host cannot write root's state dirs, nor read
root's files): `put_via_sudo` uploads into a private temp file of the login user (`mktemp`: 0600
from its creation), then `sudo -n install -m MODE -o root -g root` copies it to a temporary name
next to the destination (install creates its copy 0600 and sets MODE once written) and
`sudo -n mv -f` renames that into place; `get_via_sudo` has root `install` the file into such a
temp file (owned by the login user, 0600) and downloads that. The temp file is removed either
way. So a channel key is readable by nobody but the login user in the temp file, and by nobody
but root in its place.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, Optional, Protocol, Sequence

import paramiko

from labctl.errors import RemoteError
from labctl.transport.base import Result

TEMPLATE = "labctl.XXXXXXXXXX"


class SFTPHost(Protocol):
    """What the sudo routes need of a transport: commands, and an SFTP session."""

    host: str

    def run(self, argv: Sequence[str], *, sudo: bool = True, timeout: Optional[float] = None,
            stdin: Optional[str] = None) -> Result: ...

    def sftp_do(self, action: Callable[[paramiko.SFTPClient], None], what: str) -> None: ...


def part_name(path: str) -> str:
    """A temporary name next to `path` (same directory: the final rename stays atomic)."""
    return f"{path}.part-{os.getpid()}-{time.monotonic_ns()}"


def write(sftp: paramiko.SFTPClient, path: str, local_path: str, mode: int) -> None:
    """Write `local_path` to `path` over SFTP, chmod `mode` before the first byte."""
    with sftp.open(path, "wb") as dst:
        dst.chmod(mode)
        with open(local_path, "rb") as src:
            while True:
                block = src.read(1 << 16)
                if not block:
                    break
                dst.write(block)


def upload(sftp: paramiko.SFTPClient, local_path: str, remote_path: str, mode: int) -> None:
    """The login user writes `remote_path` itself: a part file, then a rename over it."""
    tmp = part_name(remote_path)
    try:
        write(sftp, tmp, local_path, mode)
        try:
            sftp.posix_rename(tmp, remote_path)
        except OSError:                 # no posix-rename extension on the server
            with contextlib.suppress(OSError):
                sftp.remove(remote_path)
            sftp.rename(tmp, remote_path)
    except BaseException:
        with contextlib.suppress(Exception):
            sftp.remove(tmp)
        raise


def put_via_sudo(t: SFTPHost, local_path: str, remote_path: str, mode: int) -> None:
    tmp = private_temp(t)
    part = part_name(remote_path)
    try:
        t.sftp_do(lambda sftp: write(sftp, tmp, local_path, 0o600),
                  f"upload {local_path} -> {tmp}")
        t.run(["install", "-m", f"{mode:o}", "-o", "root", "-g", "root", tmp, part],
              sudo=True).check()
        moved = t.run(["mv", "-f", part, remote_path], sudo=True)
        if not moved.ok:
            t.run(["rm", "-f", part], sudo=True)
            moved.check()
    finally:
        remove_temp(t, tmp)


def get_via_sudo(t: SFTPHost, remote_path: str, local_path: str) -> None:
    tmp = private_temp(t)
    try:
        uid = t.run(["id", "-u"], sudo=False).check().stdout.strip()
        t.run(["install", "-m", "600", "-o", uid, remote_path, tmp], sudo=True).check()
        t.sftp_do(lambda sftp: sftp.get(tmp, local_path),
                  f"download {remote_path} -> {local_path}")
    finally:
        remove_temp(t, tmp)


def private_temp(t: SFTPHost) -> str:
    """A new empty file only the login user can read (`mktemp`, mode 0600)."""
    path = t.run(["mktemp", "-t", TEMPLATE], sudo=False).check().stdout.strip()
    if not path.startswith("/"):
        raise RemoteError(f"mktemp printed no path: {path[:80]!r}",
                          hint="the login user needs a writable temp dir ($TMPDIR or /tmp)",
                          host=t.host)
    return path


def remove_temp(t: SFTPHost, tmp: str) -> None:
    with contextlib.suppress(RemoteError):  # a lost link: the first error says more
        t.run(["rm", "-f", tmp], sudo=False)
