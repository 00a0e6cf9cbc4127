"""`labctl diagnose`: capture briefly on every host at once, read the captures, walk the tree.

Acting module: tcpdump on each host (bounded by `timeout` and `-c`, argv lists, pcap written in
the host's state directory), the pcaps brought back and read with scapy here on the operator's
machine, a few read-only facts (sysctls, `ip route get`, /proc/net/netstat, engine stats before
and after). The decision itself is `labctl.verify.tree.walk` (pure).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from labctl.errors import UsageError
from labctl.facts.base import FactParseError
from labctl.facts.sockets import LISTENERS
from labctl.inventory.models import HostSpec, Inventory
from labctl.transport.base import Transport
from labctl.transport.pool import HostPool
from labctl.verify import fetch as verify
from labctl.verify import ledger as L
from labctl.verify import tree

MAX_PACKETS = 20000
SNAPLEN = 160
PCAP_NAME = "diagnose.pcap"


# ---------------------------------------------------------------- reading captures (scapy)


def read_pcap(path: str) -> list[tree.Pkt]:
    """Every IPv4 TCP/ICMP packet of a capture as a `Pkt`; anything else is skipped.

    Direction comes from Linux cooked captures (`-i any`: packet type 4 = sent by this host);
    plain Ethernet captures count as inbound."""
    from scapy.layers.inet import ICMP, IP, TCP  # lazy: scapy takes ~0.15 s to import
    from scapy.utils import PcapReader  # lazy: as above; only `labctl diagnose` reads pcaps

    out: list[tree.Pkt] = []
    with PcapReader(path) as reader:
        for frame in reader:
            if IP not in frame:
                continue
            ip = frame[IP]
            direction = tree.OUTBOUND if getattr(frame, "pkttype", 0) == 4 else tree.INBOUND
            t = float(frame.time)
            if TCP in ip:
                tcp = ip[TCP]
                out.append(tree.Pkt(t, ip.src, ip.dst, int(tcp.sport), int(tcp.dport),
                                    str(tcp.flags), direction, tcp_checksum_ok(ip),
                                    payload=max(0, int(ip.len) - 4 * int(ip.ihl)
                                                - 4 * int(tcp.dataofs)),
                                    length=int(ip.len)))
            elif ICMP in ip:
                out.append(tree.Pkt(t, ip.src, ip.dst, direction=direction,
                                    icmp_type=int(ip[ICMP].type),
                                    icmp_code=int(ip[ICMP].code)))
    return out


def tcp_checksum_ok(ip: Any) -> Optional[bool]:
    """Whether the TCP checksum is right; None when the packet was cut by the snaplen."""
    from scapy.layers.inet import TCP, in4_chksum  # lazy: scapy takes ~0.15 s to import

    raw = bytes(ip)
    if len(raw) < int(ip.len):
        return None
    segment = bytearray(bytes(ip[TCP]))[: int(ip.len) - 4 * int(ip.ihl)]
    want = int(ip[TCP].chksum)
    segment[16:18] = b"\x00\x00"
    return int(in4_chksum(socket.IPPROTO_TCP, ip, bytes(segment))) == want


# ---------------------------------------------------------------- facts (pure parsers)


def parse_netstat(text: str, name: str) -> Optional[int]:
    """A counter from /proc/net/netstat (header line of names, then a line of values)."""
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        keys, values = head.split(), vals.split()
        if keys and keys[0] == values[0] and name in keys:
            return int(values[keys.index(name)])
    return None


def parse_route_get(text: str) -> tuple[Optional[str], Optional[str]]:
    """`ip -o route get` -> (gateway or None for on-link, device)."""
    words = text.split()
    via = words[words.index("via") + 1] if "via" in words else None
    dev = words[words.index("dev") + 1] if "dev" in words else None
    return via, dev


def _int(text: str) -> Optional[int]:
    word = text.strip().split("\n")[0].strip()
    return int(word) if word.lstrip("-").isdigit() else None


# ---------------------------------------------------------------- acting


def _capture(t: Transport, spec: HostSpec, remote: str, seconds: float, filt: str) -> str:
    t.run(["mkdir", "-p", str(Path(remote).parent)]).check()
    argv = ["timeout", "-s", "INT", f"{seconds:g}", "tcpdump", "-i", "any", "-nn", "-U",
            "-s", str(SNAPLEN), "-c", str(MAX_PACKETS), "-w", remote, filt]
    res = t.run(argv, timeout=seconds + 30)
    if res.exit_code not in (0, 124):
        res.check()
    return remote


def _fetch_pcap(t: Transport, spec: HostSpec, remote: str, local: Path) -> list[tree.Pkt]:
    try:
        t.get(remote, str(local))
    finally:
        t.run(["rm", "-f", remote])
    return read_pcap(str(local))


def _routed(daemons: list[L.DaemonStats]) -> Optional[int]:
    return L.counter_sum(daemons, "intercept", "resp_routed")


def _target_facts(t: Transport, inv: Inventory, spec: HostSpec
                  ) -> dict[str, Optional[int | str]]:
    pool = inv.clients.pool_networks() or [ipaddress.IPv4Network(f"{inv.hosts.online[0].address}")]
    probe = str(next(iter(pool[0].hosts()), pool[0].network_address))
    via, _ = parse_route_get(t.run(["ip", "-o", "route", "get", probe]).stdout)
    _, dev = parse_route_get(t.run(["ip", "-o", "route", "get",
                                    str(inv.hosts.online[0].address)]).stdout)
    keys = ["net.ipv4.conf.all.rp_filter"] + ([f"net.ipv4.conf.{dev}.rp_filter"] if dev else [])
    values = [_int(t.run(["sysctl", "-n", k]).stdout) for k in keys]
    known = [v for v in values if v is not None]
    netstat = t.run(["cat", "/proc/net/netstat"]).stdout
    mtu = None
    if dev and re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", dev):
        mtu = _int(t.run(["cat", f"/sys/class/net/{dev.split('@')[0]}/mtu"]).stdout)
    return {"route_via": via, "rp_filter": max(known) if known else None,
            "rpf": parse_netstat(netstat, "IPReversePathFilter"),
            "overflows": parse_netstat(netstat, "ListenOverflows"), "mtu": mtu}


def _listeners(t: Transport, spec: HostSpec) -> Optional[list[tuple[str, int]]]:
    """The target's listening TCP sockets (`ss -Hltn`), None when they cannot be read."""
    res = t.run(list(LISTENERS.argv))
    try:
        return [(lst.address, lst.port) for lst in LISTENERS.parse(res)]
    except FactParseError:
        return None


def _filter(inv: Inventory) -> str:
    ports = sorted({s.port for s in inv.services} | {s.target_port for s in inv.services})
    return "(tcp and (" + " or ".join(f"port {p}" for p in ports) + ")) or icmp"


def pick_target(inv: Inventory, name: Optional[str]) -> HostSpec:
    """The target to diagnose: `name`, else the first (with several, a note says so)."""
    if name is None:
        return inv.targets[0]
    for t in inv.targets:
        if t.name == name:
            return t
    raise UsageError(f"--target {name}: no such target in the inventory",
                     hint="targets: " + ", ".join(t.name for t in inv.targets))


def run_diagnose(inv: Inventory, pool: HostPool, seconds: float = 5.0,
                 clock: Callable[[], float] = time.time,
                 target: Optional[str] = None) -> tree.Diagnosis:
    """Capture at once for `seconds` on the online hosts, the assistant and one target (the
    first, or `target`), gather facts, walk the tree for that target's copies."""
    spec = pick_target(inv, target)
    others = [t.name for t in inv.targets if t.name != spec.name]
    hosts = [h.name for h in inv.all_hosts() if h.name not in others]

    def daemons() -> list[L.DaemonStats]:
        out: list[L.DaemonStats] = []
        for o in pool.each(lambda s, t: verify.fetch_daemons(t, inv, s, clock())).values():
            out.extend(o.value or [])
        return out

    before = daemons()
    tfacts0 = _target_facts(pool.transport(spec.name), inv, spec)
    remote = {h.name: f"{inv.remote_dir(h)}/{PCAP_NAME}" for h in inv.all_hosts()}
    caps = pool.each(lambda s, t: _capture(t, s, remote[s.name], seconds, _filter(inv)), hosts)
    after = daemons()
    tfacts = _target_facts(pool.transport(spec.name), inv, spec)
    listeners = _listeners(pool.transport(spec.name), spec)
    with tempfile.TemporaryDirectory(prefix="labctl-diagnose-") as tmp:
        pkts = pool.each(lambda s, t: _fetch_pcap(t, s, remote[s.name], Path(tmp) / s.name),
                         [h for h in hosts if caps[h].ok])
    notes = [f"capture on {h} failed: {o.error}" for h, o in caps.items() if not o.ok]
    if others:
        notes.append(f"diagnosed target {spec.name} only (not {', '.join(others)}); "
                     "use --target NAME for another")
    notes += [f"reading the capture of {h} failed: {o.error}" for h, o in pkts.items()
              if not o.ok]
    captures = _captures(inv, spec, {h: o.value for h, o in pkts.items() if o.ok})
    facts = _facts(inv, spec, pool, before, after, tfacts, tfacts0, listeners)
    diagnosis = tree.walk(captures, facts)
    diagnosis.notes.extend(notes)
    return diagnosis


def _captures(inv: Inventory, target: HostSpec,
              got: dict[str, Optional[list[tree.Pkt]]]) -> tree.Captures:
    online: Optional[list[tree.Pkt]] = None
    for h in inv.hosts.online:
        if got.get(h.name) is not None:
            online = (online or []) + (got[h.name] or [])
    assistant = got.get(inv.hosts.assistant.name) if inv.hosts.assistant else None
    return tree.Captures(online, got.get(target.name), assistant)


def _facts(inv: Inventory, target: HostSpec, pool: HostPool, before: list[L.DaemonStats],
           after: list[L.DaemonStats], tfacts: dict[str, Optional[int | str]],
           tfacts0: dict[str, Optional[int | str]],
           listeners: Optional[list[tuple[str, int]]]) -> tree.Facts:
    ip_forward = None
    if inv.hosts.assistant is not None:
        a = inv.hosts.assistant
        ip_forward = _int(pool.transport(a.name).run(
            ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout)
    conntrack = []
    for spec in [*inv.hosts.online, target]:
        count, cmax = verify.fetch_conntrack(pool.transport(spec.name), spec)
        conntrack.append(L.Conntrack(spec.name, count, cmax))
    r0, r1 = _routed(before), _routed(after)
    rpf, via, rp = tfacts["rpf"], tfacts["route_via"], tfacts["rp_filter"]
    rpf_before = tfacts0["rpf"]
    ov, ov0 = tfacts["overflows"], tfacts0["overflows"]
    return tree.Facts(
        pool=[str(n) for n in inv.clients.pool_networks()]
        or [f"{h.address}/32" for h in inv.hosts.online],
        service_ports=sorted({s.target_port for s in inv.services}
                             | {s.port for s in inv.services}),
        target_addresses=sorted({str(inv.target_address(s, target)) for s in inv.services}),
        assistant_address=str(inv.hosts.assistant.address) if inv.hosts.assistant else None,
        daemons=after,
        intercept_routed_delta=None if r1 is None else r1 - (r0 or 0),
        ip_forward=ip_forward,
        rp_filter=rp if isinstance(rp, int) else None,
        rp_filter_drops=rpf - rpf_before if isinstance(rpf, int) and isinstance(rpf_before, int)
        else None,
        route_via=via if isinstance(via, str) else None,
        conntrack=conntrack,
        target_listeners=listeners,
        listen_overflows=ov - ov0 if isinstance(ov, int) and isinstance(ov0, int) else None,
        target_mtu=tfacts["mtu"] if isinstance(tfacts["mtu"], int) else None,
    )
