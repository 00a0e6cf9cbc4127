"""The small sections of an inventory: `services:` (the `-x` mappings), `clients:` (the fake
client pool and the networks), `intercept:`, `logs:`, `verify:` and `conntrack:`."""

from __future__ import annotations

import ipaddress
from typing import Optional

from pydantic import Field, StrictBool, StrictInt, field_validator

from labctl.inventory.base import _Frozen, absolute_path
from labctl.inventory.pool import pool_network

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network

#: Named access-log formats the verify step knows; anything else must be a `log_format` string.
LOG_FORMATS = ("combined", "labctl")


class Service(_Frozen):
    """`-x` mapping: traffic to `online_address:port` is copied to `target_address:target_port`."""

    port: StrictInt = Field(ge=1, le=65535)
    target_port: StrictInt = Field(ge=1, le=65535)
    online_address: Optional[IPv4] = None
    #: Defaults to the target host's address. Only with a single `hosts.target`: with
    #: `hosts.targets` every service is copied to each target's own address (an error).
    target_address: Optional[IPv4] = None


class Clients(_Frozen):
    #: tcpcopy `-c`: fake client addresses (`a.b.c.x` ranges or addresses). Empty in
    #: two-server means "the online host's own address" (the seed's `-c 1.2.3.4`).
    pool: list[str] = Field(default_factory=list)
    #: Routed via the assistant on the target (three-server only).
    networks: list[Net] = Field(default_factory=list)
    #: Where real clients come from; the pool must not overlap them.
    real_networks: list[Net] = Field(default_factory=list)

    @field_validator("pool")
    @classmethod
    def _pool_parses(cls, value: list[str]) -> list[str]:
        for entry in value:
            pool_network(entry)
        return value

    def pool_networks(self) -> list[Net]:
        return [pool_network(e) for e in self.pool]


class Intercept(_Frozen):
    port: StrictInt = Field(default=36524, ge=1, le=65535)
    #: Path on the operator's machine; null -> labctl generates one key per lab.
    key_file: Optional[str] = None
    #: intercept `-b`; null -> the intercept host's inventory address.
    bind: Optional[IPv4] = None


class LogSpec(_Frozen):
    path: str = Field(min_length=1)
    #: `combined`, `labctl`, or an nginx `log_format` string (contains `$`).
    format: str = "combined"

    _path_absolute = field_validator("path")(absolute_path)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in LOG_FORMATS and "$" not in value:
            raise ValueError(
                f"unknown log format {value!r}; use one of {', '.join(LOG_FORMATS)} "
                "or an nginx log_format string containing $variables"
            )
        return value


class Logs(_Frozen):
    online: LogSpec = LogSpec(path="/var/log/nginx/access.log")
    target: LogSpec = LogSpec(path="/var/log/nginx/access.log")


class Verify(_Frozen):
    ratio_tolerance: float = Field(default=0.005, ge=0, le=1)
    max_leaks: StrictInt = Field(default=0, ge=0)


class Conntrack(_Frozen):
    max_usage: float = Field(default=0.8, gt=0, le=1)
    expected_sessions: StrictInt = Field(default=10000, ge=0)
    notrack: StrictBool = False
