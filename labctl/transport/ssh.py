"""SSH transport on paramiko: one connection per host, reused for every command of a run.

We drive `paramiko.SSHClient` directly rather than through `fabric.Connection`, because fabric
installs `AutoAddPolicy`; here host keys are checked strictly (`RejectPolicy`) against the
inventory's known_hosts files, the jump host's as well. The operator's `~/.ssh/config` is read
(paramiko's parser; `ssh.config: false` turns it off) for Host aliases, HostName, User, Port,
IdentityFile and ProxyJump; a bastion (`ssh.jump`, a host's `jump:`, or ProxyJump) is reached
first and the host through a `direct-tcpip` channel of it. Who wins over whom, and which keys
are offered (the inventory's `key`, else IdentityFiles and the agent), is decided as plain data
in labctl.transport.sshroute. argv is quoted with `shlex.join` here and nowhere else.

Commands go to the host's persistent runner (labctl.transport.runner: one `python3` started
once per connection, so the login shell's start is paid once, not per command) unless
`ssh.persistent_runner: false`, the runner could not start (no python3: then one exec request
per command, for the rest of the run), or another thread of this run is using it.
"""

from __future__ import annotations

import os
import select
import shlex
import socket
import threading
import time
from typing import Callable, Optional, Sequence

import paramiko

from labctl.errors import RemoteError
from labctl.inventory.models import HostSpec, SSHOptions
from labctl.transport import files
from labctl.transport.base import TIMEOUT_EXIT, ConnectionLost, Result
from labctl.transport.batch import SUDO_PREFIX
from labctl.transport.runner import Runner, RunnerGone
from labctl.transport.sshroute import Endpoint, Route, load_ssh_config, resolve_route
from labctl.transport.trace import traced

DEFAULT_TIMEOUT = 60.0
_CHUNK = 65536
#: A command silent for this long makes labctl check that the host still answers: it opens a
#: channel, which needs a round trip, and gives up on the connection if none opens in time.
#: So a link cut mid-command is reported in ~15 s instead of at the command's timeout.
PROBE_AFTER = 10.0
PROBE_TIMEOUT = 5.0


def command_words(argv: Sequence[str], *, sudo: bool = False) -> list[str]:
    """argv as the host runs it: optionally via `sudo -n --`."""
    if not argv:
        raise ValueError("empty argv")
    return [*SUDO_PREFIX, *argv] if sudo else list(argv)


def remote_command(argv: Sequence[str], *, sudo: bool = False) -> str:
    """The one place argv becomes a command line: quoted, optionally via `sudo -n --`."""
    return shlex.join(command_words(argv, sudo=sudo))


class SSHTransport:
    """`Transport` over SSH to one inventory host. Connects lazily or via `connect()`."""

    def __init__(self, spec: HostSpec, options: Optional[SSHOptions] = None,
                 ssh_config: Optional[paramiko.SSHConfig] = None):
        self.spec = spec
        self.host = spec.name
        self.options = options or SSHOptions()
        #: Parsed by the pool once for every host; None: read at connect (if enabled).
        self._ssh_config = ssh_config
        self._client: Optional[paramiko.SSHClient] = None
        self._jump_client: Optional[paramiko.SSHClient] = None
        self._user = ""  # the login user, once connected
        self._runner: Optional[Runner] = None
        #: False once the runner could not start on this host: exec requests from then on.
        self._runner_ok = self.options.persistent_runner
        self._runner_lock = threading.Lock()

    # -- connection ----------------------------------------------------------------------
    def route(self) -> Route:
        """Where this host's connection goes (and through which bastion)."""
        config = self._ssh_config if self._ssh_config is not None \
            else load_ssh_config(self.options)
        path = os.path.expanduser(self.options.config_file)
        return resolve_route(self.spec, self.options, config, path)

    def connect(self) -> None:
        """Open the connection (idempotent); raises RemoteError naming the host (and the jump
        host, when that is the hop that failed) with a hint."""
        if self._client is not None:
            return
        route = self.route()
        jump_client, sock = None, None
        if route.jump is not None:
            jump_client = self._open(route.jump)
            sock = self._forward(jump_client, route)
        try:
            client = self._open(route.target, sock, via=route.jump)
        except BaseException:
            if jump_client is not None:
                jump_client.close()
            raise
        self._client, self._jump_client = client, jump_client
        self._user = route.target.user

    def _open(self, end: Endpoint, sock: Optional[paramiko.Channel] = None,
              via: Optional[Endpoint] = None) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        self._load_host_keys(client, end)
        timeout = self.options.connect_timeout
        kwargs: dict[str, object] = {
            "hostname": end.hostname, "port": end.port, "username": end.user,
            "timeout": timeout, "banner_timeout": timeout, "auth_timeout": timeout,
            "look_for_keys": False, "allow_agent": end.allow_agent,
        }
        if end.key_files:
            kwargs["key_filename"] = list(end.key_files)
        if sock is not None:
            kwargs["sock"] = sock
        try:
            client.connect(**kwargs)
        except Exception as exc:
            client.close()
            raise self._connect_error(end, exc, via) from None
        return client

    def _forward(self, jump_client: paramiko.SSHClient, route: Route) -> paramiko.Channel:
        """A direct-tcpip channel from the bastion to the host's SSH port."""
        assert route.jump is not None
        target = (route.target.hostname, route.target.port)
        try:
            transport = jump_client.get_transport()
            if transport is None:
                raise paramiko.SSHException("connection closed")
            return transport.open_channel("direct-tcpip", target, ("127.0.0.1", 0),
                                          timeout=self.options.connect_timeout)
        except Exception as exc:
            jump_client.close()
            raise RemoteError(
                f"{route.jump.label}: cannot open a channel to {target[0]}:{target[1]}: "
                f"{exc or type(exc).__name__}",
                hint="the bastion's sshd must allow TCP forwarding (AllowTcpForwarding yes) and "
                     "reach the host's address and port",
                host=self.host,
            ) from None

    def _load_host_keys(self, client: paramiko.SSHClient, end: Endpoint) -> None:
        path = end.known_hosts
        if self.options.strict_host_key_checking:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.load_host_keys(path)
            except OSError as exc:
                where = "" if end.label.startswith("host ") else f"{end.label}: "
                raise RemoteError(
                    f"{where}cannot read known_hosts {path}: {exc.strerror or exc}",
                    hint="strict host-key checking needs the host's key in known_hosts "
                    "(verify its fingerprint, then `ssh-keyscan` it into that file)",
                    host=self.host,
                ) from None
        else:
            # Explicitly opted out in the inventory: warn, never remember (no AutoAddPolicy).
            client.set_missing_host_key_policy(paramiko.WarningPolicy())
            if os.path.exists(path):
                client.load_host_keys(path)

    def _connect_error(self, end: Endpoint, exc: Exception,
                       via: Optional[Endpoint] = None) -> RemoteError:
        target = f"{end.user}@{end.hostname}:{end.port}"
        keyscan = f"ssh-keyscan -p {end.port} {end.hostname}"
        if isinstance(exc, paramiko.BadHostKeyException):
            hint = (
                f"the host key differs from {end.known_hosts}; if the host was "
                "reinstalled, verify the new fingerprint and update that file"
            )
        elif isinstance(exc, paramiko.AuthenticationException):
            keys = ", ".join(end.key_files) or "none"
            agent = " and the SSH agent" if end.allow_agent else ""
            hint = f"check user {end.user!r}; keys tried: {keys}{agent}"
        elif isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
            hint = (
                f"host key not in known_hosts: add it to {end.known_hosts} after verifying the "
                f"fingerprint ({keyscan}" + (f", run where {via.label} is)" if via else ")")
            )
        elif isinstance(exc, (socket.timeout, TimeoutError)):
            hint = "no answer within ssh.connect_timeout: check the address, port and firewalls"
        elif isinstance(exc, OSError):
            hint = "check that sshd runs there and the address/port are right"
        else:
            hint = "check the host's SSH settings in the inventory (and the ssh config)"
        detail = str(exc) or type(exc).__name__
        if end.label.startswith("jump host"):
            message = f"{end.label}: cannot connect to {target}: {detail}"
        elif via is not None:
            message = f"cannot connect to {target} via {via.label}: {detail}"
        else:
            message = f"cannot connect to {target}: {detail}"
        return RemoteError(message, hint=hint, host=self.host)

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
        """`sudo -n --` for privileged commands on `sudo: true` hosts, unless the login user
        (the inventory's, or the ssh config's once connected) is root."""
        return sudo and self.spec.sudo and (self._user or self.spec.user) != "root"

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        timeout: Optional[float] = None,
        stdin: Optional[str] = None,
    ) -> Result:
        words = command_words(argv, sudo=self.wants_sudo(sudo))
        command = shlex.join(words)
        limit = DEFAULT_TIMEOUT if timeout is None else timeout
        try:
            with traced(self.host, argv):
                if self._runner_ok and self._runner_lock.acquire(blocking=False):
                    try:
                        got = self._run_by_runner(words, stdin, limit)
                    finally:
                        self._runner_lock.release()
                else:
                    got = None
                if got is None:
                    channel = self._transport().open_session()
                    channel.exec_command(command)
                    if stdin is not None:
                        channel.sendall(stdin.encode())
                    channel.shutdown_write()
                    got = _collect(channel, limit, lambda: _answers(channel.get_transport()))
                code, out, err = got
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

    def _run_by_runner(self, words: list[str], stdin: Optional[str], limit: float
                       ) -> Optional[tuple[Optional[int], str, str]]:
        """The command's outcome through the runner (started on first use), or None when it
        did not reach a runner: the caller then uses an exec request. A command the runner
        took is never run again: if its answer does not come, it is reported as timed out.
        A runner that failed is closed (a new one starts next time); a lost connection
        raises EOFError. A batch runs as its argvs, `python3` as the runner's own interpreter
        (`runner.request`)."""
        transport = self._transport()
        if self._runner is None:
            try:
                self._runner = Runner.start(transport, PROBE_AFTER, self._alive)
            except RunnerGone:
                self._runner_ok = False
                return None
        runner = self._runner
        try:
            runner.send(words, stdin, limit)
        except (RunnerGone, OSError, paramiko.SSHException):
            self._drop_runner()
            return None
        try:
            return runner.receive(limit, self._alive)
        except (RunnerGone, OSError, paramiko.SSHException) as exc:
            self._drop_runner()
            return None, "", f"labctl: the command runner stopped answering: {exc}"

    def _alive(self) -> bool:
        """Does the connection still answer (a keepalive round trip)?"""
        client = self._client
        return _answers(client.get_transport() if client is not None else None)

    def _drop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        if not self._alive():
            raise EOFError("the connection closed")

    def put(self, local_path: str, remote_path: str, mode: int = 0o644) -> None:
        """Upload to a temporary name next to `remote_path`, set to `mode` before a byte is
        written (a channel key must never be readable by others, not even while it uploads),
        then renamed over `remote_path`; through sudo via a private temp file (`files`)."""
        with traced(self.host, ["put", local_path, remote_path]):
            self._put(local_path, remote_path, mode)

    def _put(self, local_path: str, remote_path: str, mode: int) -> None:
        if self.wants_sudo(True):
            files.put_via_sudo(self, local_path, remote_path, mode)
        else:
            self.sftp_do(lambda sftp: files.upload(sftp, local_path, remote_path, mode),
                         f"upload {local_path} -> {remote_path}")

    def get(self, remote_path: str, local_path: str) -> None:
        if self.wants_sudo(True):
            files.get_via_sudo(self, remote_path, local_path)
        else:
            self.sftp_do(lambda sftp: sftp.get(remote_path, local_path),
                         f"download {remote_path} -> {local_path}")

    def sftp_do(self, action: Callable[[paramiko.SFTPClient], None], what: str) -> None:
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
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        client, self._client = self._client, None
        jump, self._jump_client = self._jump_client, None
        for c in (client, jump):
            if c is not None:
                c.close()


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
