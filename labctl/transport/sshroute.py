"""Where and how labctl opens a host's SSH connection: the inventory, the operator's ssh config
(`~/.ssh/config`, read by paramiko's own parser) and the jump host, resolved into plain data.

    config = load_ssh_config(inventory.ssh)          # None: disabled or no such file
    route = resolve_route(spec, inventory.ssh, config)
    route.jump     # Endpoint of the bastion, or None (direct)
    route.target   # Endpoint of the host (reached through route.jump when there is one)

`resolve_route` is pure (no socket, no file read), so the rules below are unit-tested as data:

* Lookup. The host is looked up in the config by its inventory `name` when the config says
  something about that name it does not say about every host (a `Host web1` block: an alias);
  otherwise by its `address`.
* Precedence, per field: a value set in the inventory > the config's value > the inventory's
  default (port 22, user root). `HostName` from the config is where the connection goes (an
  alias's real address); the inventory `address` stays the host's address for everything labctl
  sets up on it (routes, copies, rules). `IdentityFile`s are used only when the host has no `key`.
* Keys. A host with `key` uses that key only. Without one: the config's IdentityFiles (if any)
  and the SSH agent (`SSH_AUTH_SOCK`); `~/.ssh/id_*` are never tried on their own.
* Jump host: the host's own `jump:` (a bastion, or `none` for direct) > `ssh.jump` > the config's
  `ProxyJump` for the host. A bastion's address is looked up in the config too (alias, User,
  Port, IdentityFile), under the same precedence. One hop only: a multi-hop ProxyJump
  (`a,b`) and ProxyCommand are refused with an error rather than silently bypassed.
* Host keys: the host's key is checked against the host's `known_hosts`, the bastion's against
  the bastion's (`ssh.jump.known_hosts`; for a ProxyJump from the config: the host's
  known_hosts file). The config's StrictHostKeyChecking and UserKnownHostsFile are not read:
  only the inventory's `ssh.strict_host_key_checking` turns checking off.
* Not followed: `Include` (paramiko's parser does not support it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import paramiko

from labctl.errors import RemoteError, UsageError
from labctl.inventory.models import HostSpec, JumpSpec, SSHOptions

#: A name no `Host` pattern of a real config matches: what the config says about every host.
_ANY_HOST = "labctl-no-such-host.invalid"
#: The config keys labctl uses; a lookup "says something" about a name if one of these differs.
_KEYS = ("hostname", "user", "port", "identityfile", "proxyjump", "proxycommand")


@dataclass(frozen=True)
class Endpoint:
    """One SSH connection to open: `label` names it in errors ("host web1", "jump host bastion")."""

    label: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    allow_agent: bool = False
    known_hosts: str = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class Route:
    """A host's connection: `target`, reached through `jump` when it is not None. `jump_from`
    says where the jump came from (for messages): `jump`, `ssh.jump` or the config file."""

    target: Endpoint
    jump: Optional[Endpoint] = None
    jump_from: str = ""


def load_ssh_config(options: SSHOptions) -> Optional[paramiko.SSHConfig]:
    """The operator's ssh config, or None when `ssh.config` is false or the file does not exist;
    an unreadable or unparsable file is a UsageError naming it."""
    if not options.config:
        return None
    path = os.path.expanduser(options.config_file)
    if not os.path.exists(path):
        return None
    hint = "fix that file, or set ssh.config: false in the inventory to ignore it"
    try:
        return paramiko.SSHConfig.from_path(path)
    except (OSError, UnicodeDecodeError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read ssh config {path}: {detail}", hint=hint) from None
    except paramiko.ssh_exception.ConfigParseError as exc:
        raise UsageError(f"cannot parse ssh config {path}: {exc}", hint=hint) from None


def resolve_route(spec: HostSpec, options: SSHOptions,
                  config: Optional[paramiko.SSHConfig], config_file: str = "") -> Route:
    """The effective connection of `spec` (see the module docstring for the rules).
    `config_file` only names the config in errors and in `Route.jump_from`."""
    where = config_file or options.config_file
    conf = _lookup(config, spec.name, str(spec.address))
    target = _endpoint(f"host {spec.name}", conf, str(spec.address), spec.port, spec.user,
                       spec.key, spec.known_hosts, set(spec.model_fields_set))
    if spec.jump == "none":
        return Route(target)
    if spec.jump is not None:
        return Route(target, _jump(spec.jump, config), "jump")
    if options.jump is not None:
        return Route(target, _jump(options.jump, config), "ssh.jump")
    if conf.get("proxycommand") is not None:
        raise RemoteError(
            f"the ssh config {where} gives host {spec.name} a ProxyCommand, which labctl does "
            "not run", hint="use ProxyJump there, or the inventory's jump:/ssh.jump",
            host=spec.name)
    proxy = str(conf.get("proxyjump") or "none").strip()
    if proxy.lower() == "none":
        return Route(target)
    if "," in proxy:
        raise RemoteError(
            f"the ssh config {where} gives host {spec.name} a multi-hop ProxyJump {proxy!r}; "
            "labctl supports one jump host",
            hint="reach the host through one bastion, or set the inventory's jump:", host=spec.name)
    user, address, port = _split_proxyjump(proxy)
    explicit = {"user"} if user else set()
    if port:
        explicit.add("port")
    hop_conf = _lookup(config, address, address)
    jump = _endpoint(f"jump host {address}", hop_conf, address, port or 22, user or "root",
                     None, spec.known_hosts, explicit)
    return Route(target, jump, where)


def _jump(spec: JumpSpec, config: Optional[paramiko.SSHConfig]) -> Endpoint:
    conf = _lookup(config, spec.address, spec.address)
    return _endpoint(f"jump host {spec.address}", conf, spec.address, spec.port, spec.user,
                     spec.key, spec.known_hosts, set(spec.model_fields_set))


def _lookup(config: Optional[paramiko.SSHConfig], name: str, address: str) -> dict[str, object]:
    """The config's options for a host: by name when the config says something specific about
    the name, else by address; {} without a config. `hostname` is kept only when the config
    gives a HostName (paramiko fills in the looked-up name otherwise)."""
    if config is None:
        return {}
    key = name
    conf = dict(config.lookup(name))
    if name != address:
        generic = dict(config.lookup(_ANY_HOST))
        if _relevant(conf) == _relevant(generic, replace=(_ANY_HOST, name)):
            key, conf = address, dict(config.lookup(address))
    if conf.get("hostname") == key:
        del conf["hostname"]
    return conf


def _relevant(conf: dict[str, object], replace: tuple[str, str] = ("", "")) -> dict[str, object]:
    def norm(value: object) -> object:
        if isinstance(value, str) and replace[0]:
            return value.replace(*replace)
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return {k: norm(conf[k]) for k in _KEYS if k in conf}


def _endpoint(label: str, conf: dict[str, object], address: str, port: int, user: str,
              key: Optional[str], known_hosts: str, explicit: set[str]) -> Endpoint:
    hostname = str(conf.get("hostname") or address)
    if "port" not in explicit and conf.get("port"):
        try:
            port = int(str(conf["port"]))
        except ValueError:
            raise UsageError(f"{label}: the ssh config's Port {conf['port']!r} is not a number",
                             hint="fix the Port line of the ssh config") from None
    if "user" not in explicit and conf.get("user"):
        user = str(conf["user"])
    if key:
        keys: tuple[str, ...] = (os.path.expanduser(key),)
    else:
        listed = conf.get("identityfile") or []
        keys = tuple(os.path.expanduser(str(k)) for k in listed)  # type: ignore[attr-defined]
    return Endpoint(label, hostname, port, user, keys, allow_agent=not key,
                    known_hosts=os.path.expanduser(known_hosts))


def _split_proxyjump(value: str) -> tuple[str, str, int]:
    """`[user@]host[:port]` -> (user or "", host, port or 0)."""
    user, _, rest = value.rpartition("@")
    host, port = rest, 0
    if rest.startswith("["):                     # [host]:port
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else 0
    elif rest.count(":") == 1:
        head, _, tail = rest.partition(":")
        if tail.isdigit():
            host, port = head, int(tail)
    return user, host, port
