"""How labctl reaches hosts: one interface (`Transport`: `run(argv) -> Result`), an SSH
implementation, a local one and a fake.

`base` (the protocol, `Result`; commands are privileged by default), `batch` (several argvs in
one round trip), `textfile` (a file written atomically in one command, its text on stdin),
`ssh.SSHTransport` (paramiko; `sshroute` resolves the inventory and `~/.ssh/config` into the
host's and the jump host's endpoints, as data; `files` moves files over SFTP, through a private
temp file and `sudo install` for non-root logins), `local.LocalTransport` (this machine),
`fake.FakeTransport` (tests: scripted answers, raises on anything unscripted), `pool.HostPool`
(one transport per inventory host, in parallel, one `Outcome` per host). `ssh`, `sshroute` and
`files` are imported lazily by `pool.ssh_factory`, so importing this package does not load
paramiko.

May import: labctl.errors, labctl.inventory (the host specs and SSH options) only.
"""

from labctl.transport.base import CommandFailed, Result, Transport
from labctl.transport.fake import FakeTransport, UnscriptedCommand
from labctl.transport.local import LocalTransport
from labctl.transport.pool import HostPool, Outcome, run_parallel

__all__ = [
    "CommandFailed",
    "FakeTransport",
    "HostPool",
    "LocalTransport",
    "Outcome",
    "Result",
    "Transport",
    "UnscriptedCommand",
    "run_parallel",
]
