"""SSH transport on paramiko: one connection per host, reused for every command of a run.

We drive `paramiko.SSHClient` directly rather than through `fabric.Connection`, because fabric
installs `AutoAddPolicy` and reads `~/.ssh/config`; here host keys are checked strictly against the
inventory's known_hosts file (`RejectPolicy`), and nothing outside the inventory changes behaviour.
argv is quoted with `shlex.join` here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import socket
import time
from typing import Callable, Optional, Sequence

import paramiko

from labctl.errors import RemoteError
from labctl.inventory.models import HostSpec, SSHOptions
from labctl.transport.base import TIMEOUT_EXIT, ConnectionLost, Result

DEFAULT_TIMEOUT = 60.0
_CHUNK = 65536
#: A command silent for this long makes labctl check that the host still answers: it opens a
#: channel, which needs a round trip, and gives up on the connection if none opens in time.
#: So a link cut mid-command is reported in ~15 s instead of at the command's timeout.
PROBE_AFTER = 10.0
PROBE_TIMEOUT = 5.0


def remote_command(argv: Sequence[str], *, sudo: bool = False) -> str:
    """The one place argv becomes a command line: quoted, optionally via `sudo -n --`."""
    if not argv:
        raise ValueError("empty argv")
    words = ["sudo", "-n", "--", *argv] if sudo else list(argv)
    return shlex.join(words)


class SSHTransport:
    """`Transport` over SSH to one inventory host. Connects lazily or via `connect()`."""

    def __init__(self, spec: HostSpec, options: Optional[SSHOptions] = None):
        self.spec = spec
        self.host = spec.name
        self.options = options or SSHOptions()
        self._client: Optional[paramiko.SSHClient] = None

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection (idempotent); raises RemoteError naming the host with a hint."""
        if self._client is not None:
            return
        client = paramiko.SSHClient()
        self._load_host_keys(client)
        kwargs: dict[str, object] = {
            "hostname": str(self.spec.address),
            "port": self.spec.port,
            "username": self.spec.user,
            "timeout": self.options.connect_timeout,
            "banner_timeout": self.options.connect_timeout,
            "auth_timeout": self.options.connect_timeout,
        }
        if self.spec.key:
            key = os.path.expanduser(self.spec.key)
            kwargs.update(key_filename=key, look_for_keys=False, allow_agent=False)
        try:
            client.connect(**kwargs)
        except Exception as exc:
            client.close()
            raise self._connect_error(exc) from None
        self._client = client

    def _load_host_keys(self, client: paramiko.SSHClient) -> None:
        path = os.path.expanduser(self.spec.known_hosts)
        if self.options.strict_host_key_checking:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.load_host_keys(path)
            except OSError as exc:
                raise RemoteError(
                    f"cannot read known_hosts {path}: {exc.strerror or exc}",
                    hint="strict host-key checking needs the host's key in known_hosts "
                    "(verify its fingerprint, then `ssh-keyscan` it into that file)",
                    host=self.host,
                ) from None
        else:
            # Explicitly opted out in the inventory: warn, never remember (no AutoAddPolicy).
            client.set_missing_host_key_policy(paramiko.WarningPolicy())
            if os.path.exists(path):
                client.load_host_keys(path)

    def _connect_error(self, exc: Exception) -> RemoteError:
        target = f"{self.spec.user}@{self.spec.address}:{self.spec.port}"
        if isinstance(exc, paramiko.BadHostKeyException):
            hint = (
                f"the host key differs from {self.spec.known_hosts}; if the host was "
                "reinstalled, verify the new fingerprint and update that file"
            )
        elif isinstance(exc, paramiko.AuthenticationException):
            hint = f"check user {self.spec.user!r} and key {self.spec.key or '(default)'}"
        elif isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
            hint = (
                f"host key unknown: add it to {self.spec.known_hosts} after verifying the "
                f"fingerprint (ssh-keyscan -p {self.spec.port} {self.spec.address})"
            )
        elif isinstance(exc, (socket.timeout, TimeoutError)):
            hint = "no answer within ssh.connect_timeout: check the address, port and firewalls"
        elif isinstance(exc, OSError):
            hint = "check that sshd runs there and the address/port are right"
        else:
            hint = "check the host's SSH settings in the inventory"
        detail = str(exc) or type(exc).__name__
        return RemoteError(f"cannot connect to {target}: {detail}", hint=hint, host=self.host)

    def _transport(self) -> paramiko.Transport:
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            self.close()
            raise ConnectionLost(
                "SSH connection lost", hint="the host rebooted or the network dropped",
                host=self.host,
            )
        return transport

    # -- commands ------------------------------------------------------------------------
    def wants_sudo(self, sudo: bool) -> bool:
        return sudo and self.spec.sudo and self.spec.user != "root"

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: Optional[float] = None,
        stdin: Optional[str] = None,
    ) -> Result:
        command = remote_command(argv, sudo=self.wants_sudo(sudo))
        limit = DEFAULT_TIMEOUT if timeout is None else timeout
        try:
            channel = self._transport().open_session()
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            code, out, err = _collect(channel, limit, lambda: _answers(channel.get_transport()))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectionLost(
                f"SSH connection failed while running `{command}`: {exc or type(exc).__name__}",
                hint="the host may have rebooted or dropped the connection; run again",
                host=self.host,
            ) from None
        if code is None:
            err += f"\nlabctl: timed out after {limit:g}s"
            code = TIMEOUT_EXIT
        return Result(self.host, tuple(argv), code, out, err)

    def put(self, local_path: str, remote_path: str, mode: int = 0o644) -> None:
        """Upload to a temporary name next to `remote_path`, set to `mode` before a byte is
        written (a channel key must never be readable by others, not even while it uploads),
        then renamed over `remote_path`."""
        def upload(sftp: paramiko.SFTPClient) -> None:
            tmp = f"{remote_path}.part-{os.getpid()}-{time.monotonic_ns()}"
            try:
                with sftp.open(tmp, "wb") as dst:
                    dst.chmod(mode)
                    with open(local_path, "rb") as src:
                        while True:
                            block = src.read(1 << 16)
                            if not block:
                                break
                            dst.write(block)
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

        self._sftp_do(upload, f"upload {local_path} -> {remote_path}")

    def get(self, remote_path: str, local_path: str) -> None:
        def download(sftp: paramiko.SFTPClient) -> None:
            sftp.get(remote_path, local_path)

        self._sftp_do(download, f"download {remote_path} -> {local_path}")

    def _sftp_do(self, action: Callable[[paramiko.SFTPClient], None], what: str) -> None:
        try:
            sftp = paramiko.SFTPClient.from_transport(self._transport())
            if sftp is None:
                raise paramiko.SSHException("SFTP subsystem unavailable")
            channel = sftp.get_channel()
            if channel is not None:  # a dead link must not block an upload forever
                channel.settimeout(DEFAULT_TIMEOUT)
            try:
                action(sftp)
            finally:
                sftp.close()
        except (socket.timeout, EOFError) as exc:
            raise ConnectionLost(f"cannot {what}: no answer ({exc or type(exc).__name__})",
                                 hint="the host or the network stopped answering",
                                 host=self.host) from None
        except (paramiko.SSHException, OSError) as exc:
            raise RemoteError(
                f"cannot {what}: {exc}", hint="check the path, its permissions and free space",
                host=self.host,
            ) from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _answers(transport: Optional[paramiko.Transport]) -> bool:
    """Whether the host still answers on this connection (a channel opens within the probe
    timeout)."""
    if transport is None or not transport.is_active():
        return False
    try:
        probe = transport.open_session(timeout=PROBE_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError):
        return False
    probe.close()
    return True


def _collect(channel: paramiko.Channel, limit: float,
             alive: Callable[[], bool] = lambda: True) -> tuple[Optional[int], str, str]:
    """Read stdout and stderr until exit or `limit` seconds; exit None means timed out.
    After PROBE_AFTER s without output, `alive()` is asked (again every PROBE_AFTER s); when
    it says no, EOFError: the connection is gone, not the command slow."""
    start = time.monotonic()
    deadline = start + limit
    heard = start
    out, err = bytearray(), bytearray()
    while True:
        n = len(out) + len(err)
        while channel.recv_ready():
            out += channel.recv(_CHUNK)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(_CHUNK)
        now = time.monotonic()
        if len(out) + len(err) != n:
            heard = now
        elif now - heard >= PROBE_AFTER:
            if not alive():
                raise EOFError(f"no answer from the host for {now - start:.0f} s")
            heard = time.monotonic()
        pending = channel.recv_ready() or channel.recv_stderr_ready()
        # The exit status can arrive while output is still in flight: wait for EOF as well,
        # or large outputs (log tails) come back cut short.
        if channel.exit_status_ready() and channel.eof_received and not pending:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            channel.close()
            return None, out.decode(errors="replace"), err.decode(errors="replace")
        select.select([channel], [], [], min(remaining, 0.1))
    code = channel.recv_exit_status()
    channel.close()
    return code, out.decode(errors="replace"), err.decode(errors="replace")
