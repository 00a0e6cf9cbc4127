"""Shared lab fixtures: every test gets its own freshly built lab, destroyed even on failure.

    def test_x(lab):            # a LabInfo, name "t<random>" (or $LABCTL_TEST_LAB_PREFIX<random>)
    def test_y(lab_factory):    # lab_factory() -> LabInfo; build several labs side by side
    def test_z(lab, lab_ssh):   # lab_ssh(lab, "online") -> fabric.Connection, strict host keys
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab, destroy_lab

if TYPE_CHECKING:
    from tests.integration.copyrig import Rig

_ALPHABET = string.ascii_lowercase + string.digits


def unique_lab_name(prefix: str = "") -> str:
    """A random valid lab name (8 characters) starting with `prefix` (default: env or 't')."""
    prefix = prefix or os.environ.get("LABCTL_TEST_LAB_PREFIX", "t")
    if not prefix[:1].isalpha():
        prefix = "t" + prefix
    prefix = prefix.lower()[:6]
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(8 - len(prefix)))


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., LabInfo]]:
    """Build labs on demand (`lab_factory(name=None, **spec_fields)`); all destroyed at teardown."""
    names: list[str] = []

    def make(name: str = "", **fields: object) -> LabInfo:
        name = name or unique_lab_name()
        names.append(name)
        info = build_lab(LabSpec(name=name, **fields))  # type: ignore[arg-type]
        assert_routes_via_lab(info)
        return info

    try:
        yield make
    finally:
        errors = []
        for name in reversed(names):
            try:
                destroy_lab(name)
            except Exception as exc:  # keep tearing down the others
                errors.append(f"{name}: {exc}")
        if errors:
            pytest.fail("lab teardown failed: " + "; ".join(errors))


@pytest.fixture
def lab(lab_factory: Callable[..., LabInfo]) -> LabInfo:
    """A freshly built 4-host lab (client, online, target, assistant), destroyed after the test."""
    return lab_factory()


@pytest.fixture
def lab_ssh() -> Iterator[Callable[[LabInfo, str], object]]:
    """lab_ssh(info, role) -> an open fabric.Connection as root, with strict host-key checking."""
    import paramiko
    from fabric import Config, Connection

    conns: list[Connection] = []

    def connect(info: LabInfo, role: str) -> Connection:
        host = info.host(role)
        assert_routes_via_lab(info, [host.address])
        conn = Connection(
            host.address, user="root", port=host.ssh_port,
            connect_kwargs={"key_filename": str(info.ssh_key), "look_for_keys": False,
                            "allow_agent": False},
            # pytest captures stdin; never forward it to remote commands.
            config=Config(overrides={"run": {"in_stream": False, "hide": True}}),
        )
        conn.client.load_host_keys(str(info.known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.open()
        conns.append(conn)
        return conn

    try:
        yield connect
    finally:
        for conn in conns:
            conn.close()


@pytest.fixture
def rig(lab: LabInfo, tmp_path: Path) -> Iterator[Rig]:
    """The copy rig in a fresh lab (tests/integration/copyrig.py); undone even on failure."""
    from tests.integration.copyrig import Rig

    r = Rig(lab, tmp_path)
    try:
        yield r
    finally:
        r.close()
