"""labctl.transport.sshroute: inventory + ssh config text -> the connection labctl opens
(precedence, lookups by name or address, keys, jump hosts per host / global / none / ProxyJump)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import paramiko
import pytest

from labctl.errors import InventoryError, RemoteError, UsageError
from labctl.inventory.load import parse_inventory
from labctl.inventory.models import HostSpec, JumpSpec, SSHOptions
from labctl.transport.sshroute import Endpoint, load_ssh_config, resolve_route

HOME = str(Path("~").expanduser())

CONFIG = """\
Host web1
    HostName 192.0.2.10
    User deploy
    Port 2222
    IdentityFile ~/.ssh/web_key
    ProxyJump ops@bastion:2200

Host bastion
    HostName 198.51.100.1
    IdentityFile ~/.ssh/bastion_key

Host 10.0.0.7
    User byaddr
    ProxyJump none

Host multi
    ProxyJump a,b

Host viacmd
    ProxyCommand nc %h %p

Host *
    User everyone
    ServerAliveInterval 30
"""


def host(**fields: Any) -> HostSpec:
    fields.setdefault("name", "web1")
    fields.setdefault("address", "10.0.0.5")
    return HostSpec(**fields)


def route(spec: HostSpec, config: Optional[str] = CONFIG, **options: Any) -> Any:
    conf = paramiko.SSHConfig.from_text(config) if config is not None else None
    return resolve_route(spec, SSHOptions(**options), conf, "cfg")


def test_without_a_config_only_the_inventory_counts() -> None:
    r = route(host(), config=None)
    assert r.jump is None
    assert r.target == Endpoint("host web1", "10.0.0.5", 22, "root", (), allow_agent=True,
                                known_hosts=f"{HOME}/.ssh/known_hosts")


def test_an_alias_gives_hostname_user_port_identityfile_and_proxyjump() -> None:
    r = route(host())
    assert (r.target.hostname, r.target.port, r.target.user) == ("192.0.2.10", 2222, "deploy")
    assert r.target.key_files == (f"{HOME}/.ssh/web_key",) and r.target.allow_agent
    # the jump host (ProxyJump ops@bastion:2200) is itself looked up: HostName, IdentityFile;
    # its user and port come from the ProxyJump value, its known_hosts is the host's file
    assert r.jump == Endpoint("jump host bastion", "198.51.100.1", 2200, "ops",
                              (f"{HOME}/.ssh/bastion_key",), allow_agent=True,
                              known_hosts=f"{HOME}/.ssh/known_hosts")
    assert r.jump_from == "cfg"


def test_inventory_fields_set_explicitly_win_over_the_config() -> None:
    r = route(host(port=22, user="root", key="/keys/id", known_hosts="/kh"))
    assert (r.target.port, r.target.user) == (22, "root")
    assert r.target.key_files == ("/keys/id",) and not r.target.allow_agent
    assert r.target.known_hosts == "/kh"
    assert r.target.hostname == "192.0.2.10"      # the alias' HostName: where SSH goes


def test_a_name_the_config_does_not_know_is_looked_up_by_address() -> None:
    r = route(host(name="db", address="10.0.0.7"))
    assert (r.target.hostname, r.target.user, r.jump) == ("10.0.0.7", "byaddr", None)
    other = route(host(name="db", address="10.0.0.8"))        # only Host * applies
    assert (other.target.hostname, other.target.user) == ("10.0.0.8", "everyone")


def test_a_name_without_hostname_still_connects_to_the_address() -> None:
    r = route(host(name="app"), config="Host app\n    User svc\n")
    assert (r.target.hostname, r.target.user) == ("10.0.0.5", "svc")


def test_config_false_ignores_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    assert load_ssh_config(SSHOptions(config=False, config_file=str(path))) is None
    loaded = load_ssh_config(SSHOptions(config_file=str(path)))
    assert loaded is not None and loaded.lookup("web1")["user"] == "deploy"


def test_missing_config_is_fine_broken_or_unreadable_names_the_file(tmp_path: Path) -> None:
    assert load_ssh_config(SSHOptions(config_file=str(tmp_path / "none"))) is None
    broken = tmp_path / "broken"
    broken.write_text("Host x\n    =oops\n")
    with pytest.raises(UsageError, match=f"cannot parse ssh config {broken}"):
        load_ssh_config(SSHOptions(config_file=str(broken)))
    with pytest.raises(UsageError, match=f"cannot read ssh config {tmp_path}"):
        load_ssh_config(SSHOptions(config_file=str(tmp_path)))        # a directory


def test_jump_precedence_host_then_global_then_proxyjump() -> None:
    bastion = JumpSpec(address="10.9.9.9", key="/k/b", known_hosts="/kh/b")
    own = JumpSpec(address="10.8.8.8", port=2022, user="me")
    glob = {"jump": bastion}
    r = route(host(jump=own), **glob)
    assert r.jump is not None and r.jump_from == "jump"
    assert (r.jump.hostname, r.jump.port, r.jump.user) == ("10.8.8.8", 2022, "me")
    r = route(host(), **glob)
    # user not set on the jump: the config's `Host *` User applies (explicit fields win)
    assert r.jump == Endpoint("jump host 10.9.9.9", "10.9.9.9", 22, "everyone", ("/k/b",),
                              allow_agent=False, known_hosts="/kh/b")
    assert r.jump_from == "ssh.jump"
    assert route(host(jump="none"), **glob).jump is None
    assert route(host(jump="none")).jump is None          # also beats the config's ProxyJump


def test_a_jump_address_that_is_an_alias_is_looked_up() -> None:
    r = route(host(name="db", address="10.0.0.8"), jump=JumpSpec(address="bastion"))
    assert r.jump is not None
    assert (r.jump.hostname, r.jump.user) == ("198.51.100.1", "everyone")
    assert r.jump.key_files == (f"{HOME}/.ssh/bastion_key",) and r.jump.allow_agent
    r = route(host(name="db", address="10.0.0.8"), jump=JumpSpec(address="bastion", user="j"))
    assert r.jump is not None and r.jump.user == "j"


def test_multi_hop_and_proxycommand_are_refused_naming_the_config() -> None:
    with pytest.raises(RemoteError, match=r"multi-hop ProxyJump 'a,b'.*one jump host"):
        route(host(name="multi"))
    with pytest.raises(RemoteError, match="cfg gives host viacmd a ProxyCommand"):
        route(host(name="viacmd"))
    assert route(host(name="viacmd", jump="none")).jump is None  # the inventory decides


def test_inventory_schema_for_jump() -> None:
    base = ("lab: t\ntopology: two-server\nhosts:\n  online: [{name: o, address: 10.0.0.1}]\n"
            "  target: {name: t, address: 10.0.0.2, jump: none}\n"
            "services: [{port: 80, target_port: 80}]\n")
    inv = parse_inventory(base + "ssh: {jump: {address: bastion.example.com, port: 2222}, "
                                 "config_file: /etc/labctl/ssh_config}\n")
    assert inv.targets[0].jump == "none" and inv.hosts.online[0].jump is None
    assert inv.ssh.jump is not None and inv.ssh.jump.port == 2222
    with pytest.raises(InventoryError, match=r"ssh\.jump"):
        parse_inventory(base + "ssh: {jump: {address: '-oProxyCommand=x'}}\n")
    with pytest.raises(InventoryError, match="jump"):
        parse_inventory(base.replace("jump: none", "jump: nowhere"))
