"""SSH as operators have it set up, over the lab's real sshd: a jump host (the assistant's sshd
forwards to the target), a jump host whose key is unknown, and an ssh config's Host alias."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from labctl.errors import RemoteError
from labctl.inventory.models import HostSpec, JumpSpec, SSHOptions
from labctl.lab import LabInfo
from labctl.transport.ssh import SSHTransport

pytestmark = pytest.mark.integration


def _target(lab: LabInfo, **fields: object) -> HostSpec:
    t = lab.host("target")
    base: dict[str, object] = {"name": t.hostname, "address": t.address, "port": t.ssh_port,
                               "key": str(lab.ssh_key), "known_hosts": str(lab.known_hosts)}
    return HostSpec(**{**base, **fields})  # type: ignore[arg-type]


def _bastion(lab: LabInfo, known_hosts: Path | None = None) -> JumpSpec:
    a = lab.host("assistant")
    return JumpSpec(address=a.address, port=a.ssh_port, key=str(lab.ssh_key),
                    known_hosts=str(known_hosts or lab.known_hosts))


def _peer(transport: SSHTransport) -> str:
    """The SSH client address the host sees (first field of $SSH_CONNECTION)."""
    return transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).check().stdout.split()[0]


def test_target_is_reached_through_the_assistant_as_jump_host(lab: LabInfo) -> None:
    """The target's sshd drops the operator's direct SSH (iptables in the target namespace):
    direct fails, through the jump host works, and the target sees the assistant as peer."""
    options = SSHOptions(connect_timeout=5, config=False)
    target, assistant = lab.host("target"), lab.host("assistant")
    rule = ["INPUT", "-p", "tcp", "--dport", str(target.ssh_port), "-s", lab.operator_address,
            "-j", "DROP"]
    subprocess.run([*lab.ns_argv("target"), "iptables", "-w", "-I", *rule], check=True)
    try:
        with pytest.raises(RemoteError, match="cannot connect"):
            SSHTransport(_target(lab), options).connect()
        # per host
        via = SSHTransport(_target(lab, jump=_bastion(lab)), options)
        try:
            assert via.run(["hostname"]).check().stdout.strip() == target.hostname
            assert _peer(via) == assistant.address
        finally:
            via.close()
        # global ssh.jump, and a host's jump: none going direct despite it
        glob = SSHOptions(connect_timeout=5, config=False, jump=_bastion(lab))
        via = SSHTransport(_target(lab), glob)
        try:
            assert _peer(via) == assistant.address
        finally:
            via.close()
        with pytest.raises(RemoteError, match="cannot connect"):
            SSHTransport(_target(lab, jump="none"), glob).connect()
    finally:
        subprocess.run([*lab.ns_argv("target"), "iptables", "-w", "-D", *rule], check=False,
                       capture_output=True)


def test_a_jump_host_with_an_unknown_key_is_refused_naming_it(lab: LabInfo,
                                                              tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    assistant = lab.host("assistant")
    spec = _target(lab, jump=_bastion(lab, known_hosts=empty))
    with pytest.raises(RemoteError) as info:
        SSHTransport(spec, SSHOptions(connect_timeout=5, config=False)).connect()
    assert info.value.message.startswith(f"jump host {assistant.address}: cannot connect")
    assert "known_hosts" in info.value.message and str(empty) in (info.value.hint or "")


def test_ssh_config_alias_hostname_user_port_and_proxyjump(lab: LabInfo, tmp_path: Path) -> None:
    """Inventory host `webalias` with no port/user/key: the config (given via ssh.config_file)
    says where it is, who to log in as and which key, and to go through the assistant."""
    target, assistant = lab.host("target"), lab.host("assistant")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host webalias\n    HostName {target.address}\n    User root\n"
        f"    Port {target.ssh_port}\n    IdentityFile {lab.ssh_key}\n"
        f"    ProxyJump root@jumpalias:{assistant.ssh_port}\n"
        f"Host jumpalias\n    HostName {assistant.address}\n    IdentityFile {lab.ssh_key}\n"
        "Host *\n    User nobody-at-all\n")
    spec = HostSpec(name="webalias", address=lab.host("online").address,  # type: ignore[arg-type]
                    known_hosts=str(lab.known_hosts))
    t = SSHTransport(spec, SSHOptions(connect_timeout=5, config_file=str(config)))
    try:
        got = t.run(["sh", "-c", "hostname; id -un; echo $SSH_CONNECTION"]).check().stdout
    finally:
        t.close()
    name, user, conn = got.strip().splitlines()
    assert (name, user) == (target.hostname, "root")
    peer, _, server, port = conn.split()
    assert (peer, server, int(port)) == (assistant.address, target.address, target.ssh_port)


def test_keys_from_the_agent_for_host_and_jump_host(lab: LabInfo, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No `key` anywhere: the lab key is offered by an ssh-agent (our own, on our own socket,
    killed by its pid), for the bastion and for the host behind it."""
    sock = tmp_path / "agent.sock"
    # Without -D the agent forks once its socket listens, and prints its pid.
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], check=True, capture_output=True,
                         text=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1))  # type: ignore[union-attr]
    try:
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", str(lab.ssh_key)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        a = lab.host("assistant")
        jump = JumpSpec(address=a.address, port=a.ssh_port, known_hosts=str(lab.known_hosts))
        spec = _target(lab, key=None, jump=jump)
        t = SSHTransport(spec, SSHOptions(connect_timeout=5, config=False))
        try:
            assert _peer(t) == a.address
        finally:
            t.close()
        monkeypatch.delenv("SSH_AUTH_SOCK")       # no agent, no key: refused
        with pytest.raises(RemoteError, match=f"jump host {a.address}"):
            SSHTransport(spec, SSHOptions(connect_timeout=5, config=False)).connect()
    finally:
        os.kill(pid, signal.SIGTERM)
