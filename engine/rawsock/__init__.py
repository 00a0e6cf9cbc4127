"""The only package with AF_PACKET, SOCK_RAW, BPF attach and PACKET_* socket options (Linux).

- ``capture``: capture sockets (``CaptureSocket``, ``open_captures``, ``join_fanout``), the
  BPF attach, the ``recv()`` reader, the daemons' capture banner and counters;
- ``ring``: the TPACKET_V3 ring's layout and a pure walker over its memory (unit-tested over
  an anonymous mmap; ``capture`` maps it);
- ``send``: ``RawIPSender`` (IP packets, ``IP_HDRINCL``) and ``LinkSender`` (``-o IFACE``:
  Ethernet frames, the next hop's MAC given or from ``/proc/net/arp``);
- ``interfaces``: the interfaces from sysfs (index, the capture candidates, MAC address).
"""

from engine.rawsock.capture import (
    DEFAULT_RING_BYTES,
    CaptureSocket,
    attach_filter,
    capture_banner,
    capture_counters,
    join_fanout,
    open_captures,
)
from engine.rawsock.interfaces import interface_index, interface_mac, list_interfaces
from engine.rawsock.send import LinkSender, RawIPSender, parse_proc_arp

__all__ = ["DEFAULT_RING_BYTES", "CaptureSocket", "LinkSender", "RawIPSender", "attach_filter",
           "capture_banner", "capture_counters", "interface_index", "interface_mac",
           "join_fanout", "list_interfaces", "open_captures", "parse_proc_arp"]
