"""The host's network interfaces, read from sysfs (PyPy 3.9's ``socket`` has neither
``if_nametoindex`` nor ``if_nameindex``): index, the capture candidates, MAC address."""

from __future__ import annotations

import os
from typing import List

from engine.packets import mac_aton

ARPHRD_LOOPBACK = 772


def interface_index(name: str, sysfs: str = "/sys/class/net") -> int:
    """The interface's index (``if_nametoindex``, read from sysfs: PyPy 3.9 lacks it); 0 when
    there is no such interface."""
    try:
        with open(os.path.join(sysfs, name, "ifindex")) as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 0


def list_interfaces(sysfs: str = "/sys/class/net") -> List[str]:
    """Interfaces that are up and not loopback, in ifindex order (what ``if_nameindex()``
    gives; read from sysfs because PyPy 3.9's ``socket`` has no ``if_nameindex``)."""
    indexed = []
    for name in os.listdir(sysfs):
        index = interface_index(name, sysfs)
        if index:                                    # else gone meanwhile, or not an interface
            indexed.append((index, name))
    out = []
    for _idx, name in sorted(indexed):
        try:
            with open(os.path.join(sysfs, name, "type")) as fh:
                if int(fh.read()) == ARPHRD_LOOPBACK:
                    continue
            with open(os.path.join(sysfs, name, "flags")) as fh:
                if not int(fh.read(), 16) & 0x1:     # IFF_UP
                    continue
        except (OSError, ValueError):
            continue
        out.append(name)
    return out


def interface_mac(ifname: str, sysfs: str = "/sys/class/net") -> bytes:
    with open(os.path.join(sysfs, ifname, "address")) as fh:
        return mac_aton(fh.read().strip())
