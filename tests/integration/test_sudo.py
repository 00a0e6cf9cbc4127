"""Non-root logins with sudo, over the lab's real sshd: `up` / `down` as a user with
password-less sudo on every host, and a user without the rights refused in preflight.

The lab's sshd accepts the lab key for any unlocked account (its AuthorizedKeysFile is the
lab's own file, StrictModes no), so a user created here (password field `*`: no password, not
locked) logs in with it. Users and sudoers files are machine-global: each test creates its own
with a random name and removes them in a finalizer, failure or not.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from labctl.inventory.models import HostSpec, SSHOptions
from labctl.transport.ssh import SSHTransport
from tests.integration.test_up_down_helpers import (
    copy_round,
    daemon_status,
    labctl,
    snapshot,
    tagged,
    up_then_down,
    write_inventory,
)

pytestmark = pytest.mark.integration

SUDOERS_DIR = Path("/etc/sudoers.d")


def _name() -> str:
    return "lcsudo" + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                              for _ in range(6))


@pytest.fixture
def lab_user() -> Iterator[Callable[[str], str]]:
    """lab_user(sudoers_rule) -> a new user name; `sudoers_rule` ("" for none) is the part
    after `NAME ALL=(root) `. Every user and sudoers file is removed at teardown."""
    made: list[str] = []

    def make(rule: str) -> str:
        if shutil.which("sudo") is None:
            pytest.fail("sudo is not installed (scripts/install.sh installs it)")
        name = _name()
        made.append(name)
        subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/bin/sh", "--password", "*", name],
                       check=True, capture_output=True, timeout=30)
        if rule:
            draft = SUDOERS_DIR / f".{name}.draft"
            draft.write_text(f"{name} ALL=(root) {rule}\n")
            os.chmod(draft, 0o440)
            subprocess.run(["visudo", "-cqf", str(draft)], check=True, timeout=30)
            draft.rename(SUDOERS_DIR / name)
        return name

    try:
        yield make
    finally:
        errors = []
        for name in made:  # the rights go first, then the account
            for path in (SUDOERS_DIR / name, SUDOERS_DIR / f".{name}.draft"):
                path.unlink(missing_ok=True)
            res = subprocess.run(["userdel", "--force", name], capture_output=True, text=True,
                                 timeout=30)
            if res.returncode not in (0, 6):  # 6: no such user
                errors.append(f"userdel {name}: {res.stderr.strip()}")
        if errors:
            pytest.fail("; ".join(errors))


def _as_user(text: str, name: str) -> str:
    """Every host of the inventory logs in as `name` with `sudo: true`."""
    assert text.count("user: root") >= 3 and text.count("sudo: false") >= 3
    return text.replace("user: root", f"user: {name}").replace("sudo: false", "sudo: true")


def _temp_files_of(name: str) -> list[str]:
    uid = pwd.getpwnam(name).pw_uid
    return [str(p) for p in Path("/tmp").glob("labctl.*") if p.stat().st_uid == uid]


def _state_files(lab: Any) -> list[str]:
    state = Path(lab.dir, "state")
    return [str(p) for p in state.rglob("*") if p.is_file()] if state.exists() else []


def test_up_copies_and_down_restores_as_a_sudo_user(lab: Any, tmp_path: Path,
                                                    lab_user: Callable[[str], str]) -> None:
    name = lab_user("NOPASSWD: ALL")
    inv = write_inventory(lab, tmp_path, edit=lambda t: _as_user(t, name))

    with up_then_down(lab, tmp_path, inv, "--json") as up:
        assert "dead-man confirmed" in up.stdout
        daemons = daemon_status(tmp_path)
        assert daemons["tcpcopy"]["alive"] and daemons["intercept"]["alive"]
        # uploads went through the user's private temp files into root's state dirs
        keys = list(Path(lab.dir, "state").rglob("channel.key"))
        assert keys, _state_files(lab)
        for key in keys:
            info = key.stat()
            assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o600), key
        assert _temp_files_of(name) == []
        for role in ("online", "target", "assistant"):  # every session the user's, none root's
            log = (Path(lab.host(role).dir) / "sshd.log").read_text()
            assert f"Accepted publickey for {name} " in log and "for root " not in log, role

        sent = copy_round(lab, 1000, 0.999)
        # verify reads both access logs and the daemons' stats through sudo as well
        res = labctl(tmp_path, "verify", str(inv), "--since-up", "--json")
        doc = json.loads(res.stdout or "{}")
        assert doc.get("online_requests") == sent, (res.returncode, res.stderr[-2000:])
        assert doc["copy_ratio"] >= 0.999, doc["verdict"]

    assert [k for k in keys if k.exists()] == []  # down removes the channel key
    assert _temp_files_of(name) == []


def test_a_user_without_the_sudo_rights_is_refused_before_any_change(
    lab: Any, tmp_path: Path, lab_user: Callable[[str], str]
) -> None:
    iptables = shutil.which("iptables") or "/usr/sbin/iptables"
    partial = lab_user(f"NOPASSWD: ALL, !{iptables}")
    none = lab_user("")
    before = snapshot(lab)
    for name, expect in ((partial, "privilege.sudo_command"), (none, "privilege.missing")):
        inv = write_inventory(lab, tmp_path, edit=lambda t, n=name: _as_user(t, n))
        up = labctl(tmp_path, "up", str(inv))
        out = up.stdout + up.stderr
        assert up.returncode == 1, out
        assert expect in out and "nothing was changed" in up.stderr, out
        named = re.search(rf"{re.escape(expect)}@([\w,.\[\]-]+)", up.stderr)
        assert named is not None, out     # the refusal names the check once, with its hosts
        for role in ("online", "target", "assistant"):
            assert lab.host(role).hostname in named.group(1).split(","), out
        if expect == "privilege.sudo_command":
            assert "`iptables`" in out and name in out, out
        assert snapshot(lab) == before and tagged(lab) == []
        assert _state_files(lab) == []
        assert _temp_files_of(name) == []


def test_put_and_get_through_sudo_into_a_root_only_dir(lab: Any, tmp_path: Path,
                                                       lab_user: Callable[[str], str]) -> None:
    """SSHTransport as a sudo user: an upload lands root-owned with its mode in a 0700 dir of
    root's that the user cannot even list, a download reads it back; no temp file is left."""
    name = lab_user("NOPASSWD: ALL")
    private = Path(lab.dir, "sudo-put")
    private.mkdir(mode=0o700)
    secret = tmp_path / "secret"
    secret.write_bytes(b"\x00key material\xff" * 1000)
    online = lab.host("online")
    spec = HostSpec(name=online.hostname, address=online.address,  # type: ignore[arg-type]
                    port=online.ssh_port, user=name, key=str(lab.ssh_key),
                    known_hosts=str(lab.known_hosts), sudo=True)
    t = SSHTransport(spec, SSHOptions(connect_timeout=5, config=False))
    try:
        assert t.run(["id", "-u"], sudo=False).check().stdout.strip() != "0"
        assert t.run(["id", "-u"]).check().stdout.strip() == "0"  # privileged by default
        assert not t.run(["ls", str(private)], sudo=False).ok
        t.put(str(secret), str(private / "channel.key"), mode=0o600)
        t.put(str(secret), str(private / "engine.pyz"), mode=0o755)
        back = tmp_path / "back"
        t.get(str(private / "channel.key"), str(back))
    finally:
        t.close()
    assert back.read_bytes() == secret.read_bytes()
    for file, mode in (("channel.key", 0o600), ("engine.pyz", 0o755)):
        st = (private / file).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, mode), file
    assert sorted(p.name for p in private.iterdir()) == ["channel.key", "engine.pyz"]
    assert _temp_files_of(name) == []
