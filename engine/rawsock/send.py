"""Senders (Linux): the copied packets out, as IP packets or as Ethernet frames.

``RawIPSender``: ``AF_INET/SOCK_RAW/IPPROTO_RAW`` with ``IP_HDRINCL``. ``LinkSender(ifname,
dst_mac=None)``: Ethernet frames on ``-o IFACE``; source MAC from sysfs, destination MAC given
(the next hop's) or looked up per destination IP in ``/proc/net/arp`` (on-link targets only; an
unresolved neighbour is reported as EHOSTUNREACH). Both ``send(ip_bytes, dst_ip)`` return 0 or
an errno and never raise (the caller counts ``send_errors``).
"""

from __future__ import annotations

import errno
import socket
from typing import Dict, Optional, Tuple

from engine.packets import ETH_P_IP, build_ethernet, ip_aton, ip_ntoa, mac_aton
from engine.rawsock.interfaces import interface_mac


class RawIPSender:
    """IPv4 packets (header included, TCP checksum already right) via IPPROTO_RAW."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self._sendto = self.sock.sendto
        self._addrs: Dict[int, Tuple[str, int]] = {}

    def send(self, packet: bytes, dst_ip: int) -> int:
        addr = self._addrs.get(dst_ip)
        if addr is None:
            addr = self._addrs[dst_ip] = (ip_ntoa(dst_ip), 0)
        try:
            self._sendto(packet, addr)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def close(self) -> None:
        self.sock.close()


def parse_proc_arp(text: str) -> Dict[Tuple[int, str], bytes]:
    """/proc/net/arp -> {(ip, device): mac} for complete entries (flags & 0x2)."""
    table: Dict[Tuple[int, str], bytes] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            if int(parts[2], 16) & 0x2:
                table[(ip_aton(parts[0]), parts[5])] = mac_aton(parts[3])
        except ValueError:
            continue
    return table


class LinkSender:
    """Ethernet frames on one interface (``-o IFACE``); dst MAC fixed or from /proc/net/arp."""

    def __init__(self, ifname: str, dst_mac: Optional[bytes] = None,
                 arp_path: str = "/proc/net/arp") -> None:
        self.ifname = ifname
        self._src = interface_mac(ifname)
        self._fixed = dst_mac
        self._arp_path = arp_path
        self._heads: Dict[int, bytes] = {}
        # protocol 0: a send-only socket, the kernel queues nothing to it
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.bind((ifname, 0))

    def _head(self, dst_ip: int) -> Optional[bytes]:
        head = self._heads.get(dst_ip)
        if head is None:
            mac = self._fixed
            if mac is None:
                try:
                    with open(self._arp_path) as fh:
                        mac = parse_proc_arp(fh.read()).get((dst_ip, self.ifname))
                except OSError:
                    mac = None
                if mac is None:
                    return None
            head = self._heads[dst_ip] = build_ethernet(mac, self._src, ETH_P_IP)
        return head

    def send(self, packet: bytes, dst_ip: int) -> int:
        head = self._head(dst_ip)
        if head is None:
            return errno.EHOSTUNREACH
        try:
            self.sock.send(head + packet)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def close(self) -> None:
        self.sock.close()
