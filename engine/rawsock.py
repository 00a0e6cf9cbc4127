"""The only module with AF_PACKET, SOCK_RAW, BPF attach and PACKET_* socket options (Linux).

- ``CaptureSocket(ifname, program, ignore_outgoing=True, rcvbuf=64 MiB)``: an
  ``AF_PACKET/SOCK_RAW/ETH_P_ALL`` socket with the classic BPF ``program`` attached BEFORE bind
  (so no unfiltered frame is ever queued), ``PACKET_IGNORE_OUTGOING`` (never re-capture our own
  output, netns findings P10), ``SO_RCVBUFFORCE``, non-blocking. ``recv_frames(limit)`` returns up
  to ``limit`` whole Ethernet frames; ``stats()`` returns cumulative (packets, drops) from
  ``PACKET_STATISTICS`` (the kernel resets them on every read, so they are accumulated here).
- ``open_captures(ifnames|None, program, ...)``: one socket per interface; None = every
  interface that is up and not loopback (``list_interfaces()``).
- ``join_fanout(sock, group_id, mode)``: joins a bound capture socket to a ``PACKET_FANOUT``
  group (``tcpcopy --workers N``: every worker's socket on an interface joins one group, mode
  hash + defrag, so all packets of a flow reach the same worker).
- ``RawIPSender``: ``AF_INET/SOCK_RAW/IPPROTO_RAW`` with ``IP_HDRINCL``. ``LinkSender(ifname,
  dst_mac=None)``: Ethernet frames on ``-o IFACE``; source MAC from sysfs, destination MAC
  given (the next hop's) or looked up per destination IP in ``/proc/net/arp`` (on-link targets
  only; an unresolved neighbour is reported as EHOSTUNREACH). Both ``send(ip_bytes, dst_ip)``
  return 0 or an errno and never raise (the caller counts ``send_errors``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from typing import Dict, List, Optional, Sequence, Tuple

from engine.bpf import Insn
from engine.packets import ETH_P_IP, build_ethernet, ip_aton, ip_ntoa, mac_aton

ETH_P_ALL = 0x0003
SOL_PACKET = 263
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
ARPHRD_LOOPBACK = 772
FRAME_BUFFER = 262144            # GRO/GSO super-frames can exceed the MTU


def attach_filter(sock: socket.socket, program: Sequence[Insn]) -> None:
    """Attach a classic BPF program (struct sock_fprog) to ``sock``. Raises OSError."""
    raw = b"".join(struct.pack("HBBI", c, jt, jf, k) for c, jt, jf, k in program)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


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


class CaptureSocket:
    """One filtered, non-blocking AF_PACKET capture socket bound to ``ifname`` (None = all)."""

    def __init__(self, ifname: Optional[str], program: Sequence[Insn],
                 ignore_outgoing: bool = True, rcvbuf: int = 64 << 20) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            # a socket created with a protocol already receives; drain anything queued before
            # the filter was attached, then bind (attach-before-bind, findings §5)
            attach_filter(self.sock, program)
            self.sock.setblocking(False)
            self._drain()
            if ignore_outgoing:
                self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((ifname or "", ETH_P_ALL))
            self._drain()
        except OSError:
            self.sock.close()
            raise
        self._buf = bytearray(FRAME_BUFFER)
        self._view = memoryview(self._buf)
        self._packets = 0
        self._drops = 0
        self.truncated = 0

    def _drain(self) -> None:
        try:
            while True:
                self.sock.recv(1, socket.MSG_TRUNC)
        except OSError:
            pass

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_frames(self, limit: int = 64) -> List[bytes]:
        """Up to ``limit`` frames, without blocking ([] when none is queued)."""
        frames: List[bytes] = []
        recv_into, view = self.sock.recv_into, self._view
        for _ in range(limit):
            try:
                n = recv_into(self._buf, FRAME_BUFFER, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            if n > FRAME_BUFFER:
                self.truncated += 1
                continue
            frames.append(bytes(view[:n]))
        return frames

    def stats(self) -> Tuple[int, int]:
        """Cumulative (packets, drops) as seen by the kernel since this socket was opened."""
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return self._packets, self._drops
        packets, drops = struct.unpack("II", raw)
        self._packets += packets
        self._drops += drops
        return self._packets, self._drops

    def close(self) -> None:
        self.sock.close()


def open_captures(ifnames: Optional[Sequence[str]], program: Sequence[Insn],
                  ignore_outgoing: bool = True, rcvbuf: int = 64 << 20) -> List[CaptureSocket]:
    """One CaptureSocket per interface (None -> every up, non-loopback interface)."""
    names = list(ifnames) if ifnames else list_interfaces()
    if not names:
        raise OSError(errno.ENODEV, "no capture interface (none up except loopback)")
    socks: List[CaptureSocket] = []
    try:
        for name in names:
            socks.append(CaptureSocket(name, program, ignore_outgoing, rcvbuf))
    except OSError as exc:
        for s in socks:
            s.close()
        raise OSError(exc.errno, f"capture on {name}: {exc.strerror}") from None
    return socks


def join_fanout(sock: socket.socket, group_id: int,
                mode: int = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) -> None:
    """Join the bound AF_PACKET ``sock`` to fanout group ``group_id`` (0..65535) of this network
    namespace: each packet then goes to ONE member socket of the group, chosen by ``mode``
    (hash: the flow's symmetric hash, so a flow always lands on the same member; defrag: IP
    fragments are reassembled first). All members must be bound alike (same interface and
    protocol) and use the same mode, else the kernel refuses with EINVAL. Raises OSError."""
    sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", (group_id & 0xFFFF) | (mode << 16)))


# ---------------------------------------------------------------- senders


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


def interface_mac(ifname: str, sysfs: str = "/sys/class/net") -> bytes:
    with open(os.path.join(sysfs, ifname, "address")) as fh:
        return mac_aton(fh.read().strip())


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
