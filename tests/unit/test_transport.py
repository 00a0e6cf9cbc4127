"""Transports: the fake is strict, the pool keeps every host's outcome, SSH quotes at the edge."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import paramiko
import pytest

from labctl.errors import RemoteError
from labctl.inventory.load import load_inventory
from labctl.inventory.models import HostSpec, SSHOptions
from labctl.transport import FakeTransport, HostPool, LocalTransport, UnscriptedCommand
from labctl.transport.base import Result, Transport
from labctl.transport.ssh import SSHTransport, remote_command

ROOT = Path(__file__).resolve().parents[2]


def test_fake_answers_exact_prefix_regex_in_that_order() -> None:
    fake = FakeTransport("h")
    fake.on_regex(r"^ip ", stdout="regex")
    fake.on_prefix(["ip", "-j"], stdout="prefix")
    fake.on(["ip", "-j", "addr"], stdout="exact")
    assert fake.run(["ip", "-j", "addr"]).stdout == "exact"
    assert fake.run(["ip", "-j", "route"]).stdout == "prefix"
    assert fake.run(["ip", "link"]).stdout == "regex"
    assert fake.commands == [("ip", "-j", "addr"), ("ip", "-j", "route"), ("ip", "link")]


def test_fake_raises_on_unscripted_and_records_it() -> None:
    fake = FakeTransport("h").on(["true"])
    with pytest.raises(UnscriptedCommand, match="rm"):
        fake.run(["rm", "-rf", "/"])
    assert fake.commands == [("rm", "-rf", "/")]


def test_fake_times_and_raises_and_handler() -> None:
    fake = FakeTransport("h")
    fake.on(["probe"], exit_code=1)
    fake.on(["probe"], exit_code=0, times=1)
    assert fake.run(["probe"]).exit_code == 0
    assert fake.run(["probe"]).exit_code == 1
    fake.on(["boom"], raises=RemoteError("link lost", host="h"))
    with pytest.raises(RemoteError):
        fake.run(["boom"])
    fake.on_prefix(["echo"], handler=lambda argv: Result("h", argv, 0, " ".join(argv[1:])))
    assert fake.run(["echo", "a", "b"]).stdout == "a b"


def test_fake_rejects_shell_strings() -> None:
    with pytest.raises(TypeError):
        FakeTransport("h").run("ls -l")


def test_fake_put_get(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.write_bytes(b"data")
    fake = FakeTransport("h")
    fake.put(str(src), "/remote/a", 0o600)
    fake.get("/remote/a", str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"data"
    with pytest.raises(UnscriptedCommand):
        fake.get("/remote/none", str(tmp_path / "c"))


def test_remote_command_quotes_once() -> None:
    assert remote_command(["echo", "a b", "$HOME", "x;y"]) == "echo 'a b' '$HOME' 'x;y'"
    assert remote_command(["id", "-u"], sudo=True) == "sudo -n -- id -u"
    with pytest.raises(ValueError):
        remote_command([])


def test_sudo_only_for_non_root_with_sudo_enabled() -> None:
    root = SSHTransport(HostSpec(name="a", address="10.0.0.1", sudo=True))  # type: ignore[arg-type]
    user = SSHTransport(HostSpec(name="b", address="10.0.0.2", user="ops", sudo=True))  # type: ignore[arg-type]
    nosudo = SSHTransport(HostSpec(name="c", address="10.0.0.3", user="ops"))  # type: ignore[arg-type]
    assert not root.wants_sudo(True)
    assert user.wants_sudo(True) and not user.wants_sudo(False)
    assert not nosudo.wants_sudo(True)


class _RecordingClient:
    instances: list[_RecordingClient] = []

    def __init__(self) -> None:
        self.policy: Any = None
        self.host_keys: list[str] = []
        self.kwargs: dict[str, Any] = {}
        _RecordingClient.instances.append(self)

    def set_missing_host_key_policy(self, policy: Any) -> None:
        self.policy = policy

    def load_host_keys(self, path: str) -> None:
        self.host_keys.append(path)

    def connect(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        raise paramiko.SSHException("Server '10.0.0.9' not found in known_hosts")

    def close(self) -> None:
        pass


def test_ssh_is_strict_and_key_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    monkeypatch.setattr(paramiko, "SSHClient", _RecordingClient)
    spec = HostSpec(name="t", address="10.0.0.9", key="/k/id", known_hosts=str(known))  # type: ignore[arg-type]
    with pytest.raises(RemoteError) as info:
        SSHTransport(spec, SSHOptions(connect_timeout=3, config=False)).connect()
    client = _RecordingClient.instances[-1]
    assert isinstance(client.policy, paramiko.RejectPolicy)
    assert client.host_keys == [str(known)]
    assert client.kwargs["look_for_keys"] is False and client.kwargs["allow_agent"] is False
    assert client.kwargs["key_filename"] == ["/k/id"] and client.kwargs["timeout"] == 3
    assert info.value.host == "t"
    assert "ssh-keyscan" in (info.value.hint or "")


def test_ssh_missing_known_hosts_is_an_error(tmp_path: Path) -> None:
    spec = HostSpec(name="t", address="127.0.0.1", known_hosts=str(tmp_path / "none"))  # type: ignore[arg-type]
    with pytest.raises(RemoteError, match="known_hosts"):
        SSHTransport(spec).connect()


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ssh_refused_connection_names_host_and_hints(tmp_path: Path) -> None:
    known = tmp_path / "kh"
    known.write_text("")
    spec = HostSpec(name="lo", address="127.0.0.1", port=_free_loopback_port(),  # type: ignore[arg-type]
                    known_hosts=str(known), key=str(tmp_path / "id"))
    with pytest.raises(RemoteError) as info:
        SSHTransport(spec, SSHOptions(connect_timeout=2)).connect()
    assert info.value.host == "lo"
    assert "cannot connect" in info.value.message and info.value.hint


def test_pool_keeps_every_outcome_when_one_host_fails() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    fakes = {h.name: FakeTransport(h.name).on(["uname"], stdout=h.name) for h in inv.all_hosts()}
    fakes["target"].on(["uname"], raises=RemoteError("gone", host="target"))
    pool = HostPool(inv, factory=lambda spec: fakes[spec.name])
    outcomes = pool.each(lambda spec, t: t.run(["uname"]).stdout)
    assert list(outcomes) == ["online1", "target", "assistant"]
    assert outcomes["online1"].unwrap() == "online1"
    assert outcomes["assistant"].value == "assistant"
    assert not outcomes["target"].ok and isinstance(outcomes["target"].error, RemoteError)
    pool.close()
    assert all(f.closed for f in fakes.values())


def test_pool_open_reports_all_connect_failures() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")

    class Broken(FakeTransport):
        def connect(self) -> None:
            raise RemoteError("cannot connect", hint="check sshd", host=self.host)

    def factory(spec: HostSpec) -> Transport:
        return Broken(spec.name) if spec.name != "target" else FakeTransport(spec.name)

    with pytest.raises(RemoteError) as info:
        HostPool.open(inv, factory=factory)
    assert "[online1]" in info.value.message and "[assistant]" in info.value.message
    assert "[target]" not in info.value.message


def test_pool_propagates_unscripted_commands() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    pool = HostPool(inv, factory=lambda spec: FakeTransport(spec.name))
    with pytest.raises(UnscriptedCommand):
        pool.each(lambda spec, t: t.run(["hostname"]))


def test_local_transport_runs_argv_without_shell() -> None:
    local = LocalTransport()
    res = local.run(["echo", "$HOME;", "x"])
    assert res.ok and res.stdout == "$HOME; x\n"
    assert local.run(["false"]).exit_code == 1
    assert local.run(["no-such-command-labctl"]).exit_code == 127
    assert local.run(["sleep", "5"], timeout=0.2).exit_code == 124
