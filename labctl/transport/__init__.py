"""How labctl reaches hosts: one interface (`Transport`), an SSH implementation and a fake.

`ssh.SSHTransport` (paramiko) is imported lazily by `pool.ssh_factory`, so importing this package
stays cheap; `fake.FakeTransport` is for tests.
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
