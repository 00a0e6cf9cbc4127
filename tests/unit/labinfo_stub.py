"""A stand-in for `labctl.lab.LabInfo` with the contract's attributes (unit tests only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class HostStub:
    role: str
    address: str
    dir: Path
    ssh_port: int = 22
    netns: str = ""
    ifname: str = "eth0"
    access_log: Optional[Path] = None
    error_log: Optional[Path] = None

    @property
    def hostname(self) -> str:
        return self.role


@dataclass(frozen=True)
class LabStub:
    name: str = "demo"
    index: int = 1
    hosts: dict[str, HostStub] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return Path(f"/run/labctl-lab/{self.name}")

    @property
    def lab_net(self) -> str:
        return f"10.77.{self.index}.0/24"

    @property
    def client_net(self) -> str:
        return f"10.78.{self.index}.0/24"

    @property
    def fake_pool(self) -> str:
        return f"10.79.{self.index}.0/24"

    @property
    def operator_address(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def ssh_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"


def lab_stub(name: str = "demo", index: int = 1) -> LabStub:
    base = Path(f"/run/labctl-lab/{name}")
    octet = {"client": 10, "online": 10, "target": 20, "assistant": 30}
    hosts = {}
    for role in ("client", "online", "target", "assistant"):
        net = 78 if role == "client" else 77
        d = base / role
        logs = role in ("online", "target")
        hosts[role] = HostStub(
            role=role,
            address=f"10.{net}.{index}.{octet[role]}",
            dir=d,
            netns=f"lc-{name}-{role}",
            access_log=d / "access.log" if logs else None,
            error_log=d / "error.log" if logs else None,
        )
    return LabStub(name=name, index=index, hosts=hosts)
