"""engine.rawsock.list_interfaces (``interfaces``) reads /sys/class/net (PyPy 3.9's socket has
no if_nameindex): up, non-loopback interfaces in ifindex order, whatever the directory order."""

from __future__ import annotations

import socket
from pathlib import Path

from engine.rawsock import list_interfaces

LOOPBACK, ETHER = 772, 1


def _iface(root: Path, name: str, index: int, kind: int = ETHER, up: bool = True) -> None:
    d = root / name
    d.mkdir()
    (d / "ifindex").write_text(f"{index}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "flags").write_text("0x1003\n" if up else "0x1002\n")


def test_up_non_loopback_interfaces_in_ifindex_order(tmp_path: Path) -> None:
    _iface(tmp_path, "lo", 1, kind=LOOPBACK)
    _iface(tmp_path, "zeth", 2)
    _iface(tmp_path, "aeth", 10)
    _iface(tmp_path, "down0", 3, up=False)
    _iface(tmp_path, "eth1", 4)
    (tmp_path / "gone").mkdir()               # removed while we read: no ifindex file
    (tmp_path / "bonding_masters").write_text("")  # a plain file in the directory
    assert list_interfaces(str(tmp_path)) == ["zeth", "eth1", "aeth"]


def test_same_order_as_if_nameindex_where_the_interpreter_has_it() -> None:
    """On CPython the sysfs reading must agree with the kernel's own list (PyPy has none to
    compare with: the first test covers it there)."""
    found = list_interfaces()
    assert len(set(found)) == len(found)
    if hasattr(socket, "if_nameindex"):
        assert found == [n for _, n in socket.if_nameindex() if n in found]
