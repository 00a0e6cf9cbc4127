"""IPv4 / TCP / Ethernet headers as small typed values (pure, stdlib only).

Modules: ``wire`` (constants, addresses, sequence arithmetic, checksums, Ethernet) and
``headers`` (the typed headers and packets); everything is re-exported here.

Shape:
- ``IPv4Header`` and ``TCPHeader``: mutable values with ``__slots__`` and one precompiled
  ``struct.Struct`` each; ``unpack(buf, offset=0)`` raises ``PacketError`` on any bad
  length / version / IHL / DOFF; ``pack()`` emits exactly the stored fields (no fix-ups).
  Addresses are ints (the network-order 4 bytes read big-endian); see ``ip_aton``/``ip_ntoa``.
- ``Packet`` (ip, tcp, payload; ``packet.options`` is ``tcp.options``, raw bytes).
  ``parse_ipv4_tcp`` is ``engine.header.view`` (the one set of validation rules, shared with
  the capture path, the router and the channel decoder) plus ``from_view`` constructors.
  ``to_bytes()`` never touches checksums or lengths; ``fill_checksums(packet)`` (in place) and
  ``packet.with_checksums()`` (copy) recompute total_length, IHL/DOFF and both checksums.
- TCP options stay raw; ``parse_tcp_options`` / ``build_tcp_options`` / ``get_timestamps`` /
  ``set_timestamps`` (in ``engine.tcpopts``, re-exported here) read and rebuild them.
- Ethernet: ``strip_ethernet(frame) -> (ethertype, l3_offset)`` tolerates 802.1Q / 802.1ad
  tags; ``build_ethernet(dst, src, ethertype)``.
- Sequence arithmetic mod 2**32: ``seq_after``, ``seq_before``, ``seq_geq``, ``seq_leq``,
  ``seq_add``, ``seq_diff``.
"""

from engine.packets.headers import (
    IPv4Header,
    Packet,
    TCPHeader,
    fill_checksums,
    flags_str,
    parse_ipv4_tcp,
)
from engine.packets.wire import (
    ACK,
    CWR,
    ECE,
    ETH_HLEN,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_IP,
    FIN,
    IP_DF,
    IP_MF,
    IPPROTO_TCP,
    PSH,
    RST,
    SYN,
    URG,
    build_ethernet,
    checksum,
    ip_aton,
    ip_ntoa,
    mac_aton,
    mac_ntoa,
    seq_add,
    seq_after,
    seq_before,
    seq_diff,
    seq_geq,
    seq_leq,
    strip_ethernet,
    tcp_checksum,
)
from engine.pkterror import PacketError
from engine.tcpopts import (
    TcpOptions,
    build_tcp_options,
    get_timestamps,
    iter_tcp_options,
    parse_tcp_options,
    set_timestamps,
)

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "ETH_HLEN",
    "ETH_P_8021AD",
    "ETH_P_8021Q",
    "ETH_P_IP",
    "FIN",
    "IPPROTO_TCP",
    "IP_DF",
    "IP_MF",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "IPv4Header",
    "Packet",
    "PacketError",
    "TCPHeader",
    "TcpOptions",
    "build_ethernet",
    "build_tcp_options",
    "checksum",
    "fill_checksums",
    "flags_str",
    "get_timestamps",
    "ip_aton",
    "ip_ntoa",
    "iter_tcp_options",
    "mac_aton",
    "mac_ntoa",
    "parse_ipv4_tcp",
    "parse_tcp_options",
    "seq_add",
    "seq_after",
    "seq_before",
    "seq_diff",
    "seq_geq",
    "seq_leq",
    "set_timestamps",
    "strip_ethernet",
    "tcp_checksum",
]
