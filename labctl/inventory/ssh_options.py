"""The `ssh:` section and the jump-host shape shared by `ssh.jump` and a host's own `jump:`.

How these combine with `~/.ssh/config` (precedence, lookups) is decided in
labctl.transport.sshroute; this module only says what is valid.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, StrictBool, StrictInt

from labctl.inventory.base import _Frozen

#: A jump host's address: an IPv4 address, a DNS name or a `Host` alias of the ssh config
#: (never starting with `-`, no spaces).
JUMP_ADDRESS = r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,252}$"


class JumpSpec(_Frozen):
    """A bastion: labctl connects to it (strict host-key check against its own known_hosts),
    opens a direct-tcpip channel to the host's address:port and runs SSH over that."""

    address: str = Field(pattern=JUMP_ADDRESS)
    port: StrictInt = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", min_length=1)
    key: Optional[str] = None
    known_hosts: str = "~/.ssh/known_hosts"


#: A host's `jump:`: a bastion of its own, or `none` (connect directly even with `ssh.jump`).
HostJump = Union[JumpSpec, Literal["none"]]


class SSHOptions(_Frozen):
    connect_timeout: float = Field(default=10, gt=0)
    strict_host_key_checking: StrictBool = True
    #: Read the operator's ssh config (`config_file`) for Host aliases, HostName, User, Port,
    #: IdentityFile and ProxyJump; false: only the inventory counts.
    config: StrictBool = True
    config_file: str = Field(default="~/.ssh/config", min_length=1)
    #: Run labctl's commands on each host through one long-lived `python3` started once per
    #: connection (the login shell starts once per host, not once per command); false: one
    #: SSH exec request per command (labctl.transport.runner).
    persistent_runner: StrictBool = True
    #: A bastion for every host (a host's own `jump:` wins; `jump: none` goes direct).
    jump: Optional[JumpSpec] = None
