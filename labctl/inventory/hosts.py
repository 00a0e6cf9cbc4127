"""The `hosts:` section: online hosts, the target(s) with their roles, the assistant, and how
to reach each (address, port, user, key, sudo, jump)."""

from __future__ import annotations

import ipaddress
from typing import Literal, Optional

from pydantic import Field, StrictBool, StrictInt, field_validator
from pydantic import model_validator as _model_validator

from labctl.inventory.base import FieldProblem, _Frozen, absolute_path
from labctl.inventory.ssh_options import HostJump

IPv4 = ipaddress.IPv4Address

HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"

Role = Literal["online", "target", "assistant"]


class HostSpec(_Frozen):
    """One SSH-reachable host."""

    name: str = Field(pattern=HOST_NAME)
    address: IPv4
    port: StrictInt = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", min_length=1)
    key: Optional[str] = None
    known_hosts: str = "~/.ssh/known_hosts"
    sudo: StrictBool = False
    #: This host's nginx access log when it is not `logs.online.path` / `logs.target.path`
    #: (hosts laid out differently, or hosts sharing one filesystem like the local lab).
    access_log: Optional[str] = Field(default=None, min_length=1)
    #: This host's bastion, or `none` to connect directly; unset: `ssh.jump`, else the ssh
    #: config's ProxyJump (labctl.transport.sshroute).
    jump: Optional[HostJump] = None

    _log_absolute = field_validator("access_log")(absolute_path)


#: What a target is for: `baseline` (the version in production) and `candidate` (the version
#: under test) are what `labctl compare` pairs; `plain` is any other copy.
TargetRole = Literal["baseline", "candidate", "plain"]


class TargetSpec(HostSpec):
    """One of `hosts.targets`: a host spec plus what it is for."""

    role: TargetRole = "plain"


class Hosts(_Frozen):
    """`target` (one) or `targets` (a list, each with a role): exactly one of them.

    Read the targets through `Inventory.targets` / `Inventory.target_role`, never here."""

    online: list[HostSpec] = Field(min_length=1)
    target: Optional[HostSpec] = None
    targets: Optional[list[TargetSpec]] = Field(default=None, min_length=1)
    assistant: Optional[HostSpec] = None

    @_model_validator(mode="after")
    def _one_target_key(self) -> Hosts:
        if self.target is None and self.targets is None:
            raise FieldProblem(("hosts",), "hosts needs target: (one host) or targets: (a list "
                                           "of hosts, each with role: baseline|candidate|plain)")
        if self.target is not None and self.targets is not None:
            raise FieldProblem(("hosts", "targets"),
                               "give hosts.target or hosts.targets, not both (a single target "
                               "is a list of one)")
        return self
