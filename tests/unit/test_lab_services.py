"""Pure parts of the lab services: rendered configs, known_hosts, /proc/net/tcp, preflight."""

from __future__ import annotations

import shutil

import pytest

from labctl.errors import LabError
from labctl.lab import build, services
from labctl.lab.spec import LabSpec, plan_lab
from labctl.verify.logparse import LABCTL

INFO = plan_lab("u1", 5)


def test_nginx_conf_has_own_paths_endpoints_and_log_format() -> None:
    conf = services.render_nginx_conf(INFO, INFO.hosts["online"])
    d = "/run/labctl-lab/u1/online"
    assert f"pid {d}/nginx.pid;" in conf
    assert f"access_log {d}/access.log labctl;" in conf
    assert f"error_log {d}/error.log" in conf
    assert f"client_body_temp_path {d}/tmp/client_body;" in conf
    assert "listen 10.77.5.10:80" in conf
    for loc in ("location = / ", "location = /echo", "location = /slow", "location = /big"):
        assert loc in conf
    # the format verify parses as `labctl` is the one nginx writes
    assert f"log_format labctl '{LABCTL}';" in conf and LABCTL.endswith(' "$host" $remote_port')
    assert "keepalive_requests 1000000;" in conf
    assert "client_max_body_size 8m;" in conf
    assert "{{" not in conf


def test_nginx_has_virtual_hosts_api_static_and_a_bodies_log() -> None:
    conf = services.render_nginx_conf(INFO, INFO.hosts["target"])
    d = "/run/labctl-lab/u1/target"
    names = [line.strip() for line in conf.splitlines() if "server_name" in line]
    assert names == ["server_name target;", "server_name a.example;", "server_name b.example;"]
    assert conf.count("listen 10.77.5.20:80 reuseport backlog=4096;") == 1   # the default
    assert conf.count("listen 10.77.5.20:80;") == 2
    assert conf.count("location /api/ {") == 3 and conf.count("location /static/ {") == 3
    assert "log_format bodies escape=json '$request_method $request_uri $request_body';" in conf
    assert conf.count(f"access_log {d}/bodies.log bodies if=$labctl_has_body;") == 6
    # a location with its own access_log must repeat the main one (nginx does not inherit it)
    assert conf.count(f"access_log {d}/access.log labctl;") == 7


def test_nginx_confs_differ_per_host() -> None:
    a = services.render_nginx_conf(INFO, INFO.hosts["online"])
    b = services.render_nginx_conf(INFO, INFO.hosts["target"])
    assert "listen 10.77.5.20:80" in b and "/target/access.log" in b and a != b


def test_sshd_config_is_key_only_root() -> None:
    conf = services.render_sshd_config(INFO, INFO.hosts["assistant"])
    lines = set(conf.splitlines())
    for expected in ("ListenAddress 10.77.5.30:22", "PermitRootLogin prohibit-password",
                     "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                     "UsePAM no", "AuthorizedKeysFile /run/labctl-lab/u1/authorized_keys",
                     "PidFile /run/labctl-lab/u1/assistant/sshd.pid",
                     "HostKey /run/labctl-lab/u1/assistant/ssh_host_ed25519_key"):
        assert expected in lines


def test_sshd_runs_with_absolute_path_and_hostname() -> None:
    argv = services.start_argv(INFO, INFO.hosts["target"], "sshd")
    assert argv[:4] == ["ip", "netns", "exec", "lc-u1-target"]
    assert "unshare" in argv and "--uts" in argv
    assert "/usr/sbin/sshd" in argv
    assert argv[argv.index("sh") + 1] == "target"
    # root's shell start-up files: the host's own, bound in a mount namespace of sshd's
    assert argv[argv.index("sh") + 2:argv.index("sh") + 4] == [
        services.ROOT_HOME, "/run/labctl-lab/u1/target/host.bashrc"]
    assert "--mount" in argv and "mount --bind" in argv[argv.index("-c") + 1]
    assert "lab host target" in services.render_host_rc(INFO, INFO.hosts["target"])


def test_known_hosts_lines() -> None:
    text = services.known_hosts_text([("10.77.5.10", 22, "ssh-ed25519 AAAA root@x\n"),
                                      ("10.77.5.20", 2222, "ssh-ed25519 BBBB")])
    assert text == "10.77.5.10 ssh-ed25519 AAAA\n[10.77.5.20]:2222 ssh-ed25519 BBBB\n"


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0A054D0A:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2
   2: 0A054D0A:0016 0A054D01:C350 01 00000000:00000000 00:00000000 00000000     0        0 3
"""


def test_listeners_parses_proc_net_tcp() -> None:
    assert services.listeners(PROC_NET_TCP) == {("10.77.5.10", 22), ("127.0.0.1", 8081)}


def test_locked_root_detected() -> None:
    assert services.root_login_locked("daemon:*:1\nroot:!$6$x:19000::::::\n")
    assert not services.root_login_locked("root:*:19000:0:99999:7:::\n")
    assert not services.root_login_locked("")


def test_service_names() -> None:
    assert services.service_names(INFO.hosts["online"]) == ["sshd", "nginx"]
    assert services.service_names(INFO.hosts["assistant"]) == ["sshd"]
    assert services.service_names(INFO.hosts["client"]) == []


def test_preflight_refuses_non_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        build.preflight(LabSpec(name="u1"))


def test_preflight_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.os, "geteuid", lambda: 0)
    real = shutil.which
    monkeypatch.setattr(build.shutil, "which",
                        lambda b: None if b == "ethtool" else real(b) or f"/usr/bin/{b}")
    monkeypatch.setattr(build.os, "access", lambda p, m: True)
    with pytest.raises(LabError) as exc:
        build.preflight(LabSpec(name="u1"))
    assert "'ethtool' not found" in exc.value.message
    assert exc.value.hint == "install it: apt-get install ethtool"
