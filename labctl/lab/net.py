"""Network plumbing of the lab with pyroute2: namespaces, veths, bridge, addresses, routes.

Sysctls and offloads go through `ip netns exec ... sysctl/ethtool` (one short process each, run
in parallel), because /proc/sys/net and ethtool act on the caller's namespace. This is the only
module that talks netlink; pyroute2's errors leave it as LabError.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from labctl.errors import LabError
from labctl.lab.spec import ONLINE_ROLES, TARGET_ROLES, LabInfo

if TYPE_CHECKING:
    from pyroute2 import IPRoute

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
ROUTER_OP_PORT = "p-op"
CLIENT_GW_IF = "p-client"
PORT_NAMES = {**{role: f"p-{role}" for role in ONLINE_ROLES}, "target": "p-target",
              "target2": "p-target2", "assistant": "p-assist"}
OFFLOAD_ARGS = ("tx", "off", "tso", "off", "gso", "off")
CMD_TIMEOUT = 20.0

# Per-namespace sysctls: no IPv6 noise on captures, deterministic rp_filter, no forwarding on hosts.
HOST_SYSCTLS = {
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
ROUTER_SYSCTLS = {
    **HOST_SYSCTLS,
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "0",
    "net.bridge.bridge-nf-call-ip6tables": "0",
    "net.bridge.bridge-nf-call-arptables": "0",
}


# --- pyroute2, imported on first use -------------------------------------------------------

def _pyroute2() -> Any:
    """The pyroute2 package (IPRoute, netns, NetlinkError)."""
    import pyroute2  # lazy: ~0.1 s to import; only building/inspecting a lab talks netlink

    return pyroute2


def _ipr(ns: Optional[str] = None) -> IPRoute:
    """An rtnetlink socket in the root namespace, or in namespace `ns`."""
    return _pyroute2().IPRoute(netns=ns) if ns else _pyroute2().IPRoute()


@contextmanager
def netlink_errors(what: str) -> Iterator[None]:
    """Re-raise pyroute2's NetlinkError as a LabError saying what was being done."""
    try:
        yield
    except _pyroute2().NetlinkError as exc:
        raise LabError(f"netlink: {exc.args[-1] if exc.args else exc} while {what} "
                       f"(code {exc.code})") from None


# --- small process helper -------------------------------------------------------------------

def run_all(argvs: Sequence[Sequence[str]], what: str) -> None:
    """Run the argvs concurrently; raise LabError naming the first one that failed."""
    procs = [
        (list(a), subprocess.Popen(list(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True))
        for a in argvs
    ]
    failures = []
    for argv, p in procs:
        try:
            out, err = p.communicate(timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err = f"timed out after {CMD_TIMEOUT:.0f}s {err}"
        if p.returncode != 0:
            failures.append(f"`{' '.join(argv)}` exited {p.returncode}: "
                            f"{(err or out).strip()[-300:] or '(no output)'}")
    if failures:
        raise LabError(f"{what} failed: {failures[0]}")


# --- namespaces -----------------------------------------------------------------------------

def existing_namespaces() -> set[str]:
    """Names listed by `ip netns list` (the files in /run/netns)."""
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def create_namespaces(names: Iterable[str]) -> None:
    for name in names:
        _pyroute2().netns.create(name)


def remove_namespace(name: str) -> None:
    """Remove `name` from /run/netns if present (the kernel frees it once nothing uses it)."""
    if name in existing_namespaces():
        _pyroute2().netns.remove(name)


def ns_pids(name: str) -> list[int]:
    """PIDs of live processes whose network namespace is `name` (like `ip netns pids`)."""
    try:
        st = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return []
    want = (st.st_dev, st.st_ino)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pst = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone, a zombie, or a kernel thread
        if (pst.st_dev, pst.st_ino) == want:
            pids.append(int(entry))
    return pids


def pid_in_namespaces(pid: int, names: Iterable[str]) -> bool:
    """True if process `pid` lives in one of the named namespaces (guards against PID reuse)."""
    try:
        pst = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    for name in names:
        try:
            st = os.stat(NETNS_DIR / name)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) == (pst.st_dev, pst.st_ino):
            return True
    return False


def set_sysctls(items: dict[str, dict[str, str]]) -> None:
    """items: namespace -> {key: value}; one `sysctl -w` per namespace, all in parallel."""
    argvs = [
        ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *(f"{k}={v}" for k, v in kv.items())]
        for ns, kv in items.items()
    ]
    run_all(argvs, "setting sysctls")


def offloads_off(links: dict[str, list[str]], root_links: Iterable[str]) -> None:
    """Turn checksum/segmentation offloads off (findings P9) on every listed lab link."""
    argvs: list[list[str]] = []
    for ns, ifnames in links.items():
        argvs += [["ip", "netns", "exec", ns, "ethtool", "-K", i, *OFFLOAD_ARGS] for i in ifnames]
    argvs += [["ethtool", "-K", i, *OFFLOAD_ARGS] for i in root_links]
    run_all(argvs, "turning offloads off")


def offload_links(info: LabInfo) -> tuple[dict[str, list[str]], list[str]]:
    """(namespace -> lab links, root-namespace lab links) whose offloads must be off."""
    links = {h.netns: [h.ifname] for h in info.hosts.values()}
    links[info.router_ns] = [BRIDGE, ROUTER_OP_PORT, CLIENT_GW_IF,
                             *(port for role, port in PORT_NAMES.items() if role in info.hosts)]
    return links, [info.operator_ifname]


# --- links, addresses, routes ---------------------------------------------------------------

def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"link {ifname!r} not found after creating it")
    return int(found[0])


def _up(ipr: IPRoute, ifname: str, address: str = "", prefixlen: int = 24) -> int:
    idx = _index(ipr, ifname)
    if address:
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
    ipr.link("set", index=idx, state="up")
    return idx


def build_network(info: LabInfo) -> None:
    """Create bridge, veths, addresses and routes of a lab whose namespaces already exist."""
    with netlink_errors("wiring the lab"):
        _build_router(info)
        _build_root(info)
        for role in info.hosts:
            _build_host(info, role)


def _build_router(info: LabInfo) -> None:
    with _ipr(info.router_ns) as r:
        _up(r, "lo")
        r.link("add", ifname=BRIDGE, kind="bridge")
        br = _up(r, BRIDGE, info.router_address)
        for role, port in PORT_NAMES.items():
            if role not in info.hosts:
                continue
            host = info.hosts[role]
            r.link("add", ifname=port, kind="veth",
                   peer={"ifname": host.ifname, "net_ns_fd": host.netns})
            r.link("set", index=_index(r, port), master=br)
            _up(r, port)
        client = info.hosts["client"]
        r.link("add", ifname=CLIENT_GW_IF, kind="veth",
               peer={"ifname": client.ifname, "net_ns_fd": client.netns})
        _up(r, CLIENT_GW_IF, info.client_gateway)


def _build_root(info: LabInfo) -> None:
    with _ipr() as root:
        root.link("add", ifname=info.operator_ifname, kind="veth",
                  peer={"ifname": ROUTER_OP_PORT, "net_ns_fd": info.router_ns})
        idx = _up(root, info.operator_ifname, info.operator_address)
        root.route("add", dst=info.client_net, gateway=info.router_address, oif=idx)
    with _ipr(info.router_ns) as r:
        r.link("set", index=_index(r, ROUTER_OP_PORT), master=_index(r, BRIDGE))
        _up(r, ROUTER_OP_PORT)


def _build_host(info: LabInfo, role: str) -> None:
    host = info.hosts[role]
    with _ipr(host.netns) as ipr:
        _up(ipr, "lo")
        idx = _up(ipr, host.ifname, host.address, host.prefixlen)
        for extra in host.extra_addresses:
            ipr.addr("add", index=idx, address=extra, prefixlen=host.prefixlen)
        for dst, gw in host_routes(info, role):
            ipr.route("add", dst=dst, gateway=gw, oif=idx)


def host_routes(info: LabInfo, role: str) -> list[tuple[str, str]]:
    """(destination, gateway) routes of a host: the tcpcopy 3-server layout."""
    if role == "client":
        return [("0.0.0.0/0", info.client_gateway)]
    if role in TARGET_ROLES:
        return [(info.client_net, info.hosts["assistant"].address)]
    return [(info.client_net, info.router_address)]


def root_link_exists(ifname: str) -> bool:
    with _ipr() as root:
        return bool(root.link_lookup(ifname=ifname))


def delete_root_link(ifname: str) -> None:
    """Delete a root-namespace link if it exists (its veth peer goes with it)."""
    with _ipr() as root:
        for idx in root.link_lookup(ifname=ifname):
            try:
                root.link("del", index=idx)
            except _pyroute2().NetlinkError as exc:
                if exc.code != 19:  # ENODEV: already gone
                    raise


def root_routes() -> list[str]:
    """IPv4 route destinations (CIDR) of every table in the root namespace."""
    out = []
    with _ipr() as root:
        for msg in root.get_routes(family=socket.AF_INET):
            dst = msg.get_attr("RTA_DST") or "0.0.0.0"
            out.append(f"{dst}/{msg['dst_len']}")
    return out


def route_dev(address: str) -> str:
    """The root-namespace output interface for `address` (like `ip route get`); '' if none."""
    with _ipr() as root:
        try:
            msgs: Any = root.route("get", dst=address)
        except _pyroute2().NetlinkError:
            return ""
        for msg in msgs:
            oif = msg.get_attr("RTA_OIF")
            if oif is None:
                continue
            links = root.link("get", index=oif)
            return str(links[0].get_attr("IFLA_IFNAME"))
    return ""


def assert_routes_via(ifname: str, addresses: Iterable[str]) -> None:
    """Raise LabError unless every address leaves the root namespace through `ifname`."""
    for addr in addresses:
        dev = route_dev(addr)
        if dev != ifname:
            raise LabError(
                f"{addr} routes via {dev or 'nothing'!r}, not via the lab link {ifname!r}",
                hint="refusing to send traffic outside the lab; is the lab up?",
            )


def assert_routes_via_lab(info: LabInfo, addresses: Optional[Iterable[str]] = None) -> None:
    """Raise LabError unless each address (default: every address of lab `info`) leaves the root
    namespace through the lab's own veth. Call it before sending anything from the root netns."""
    assert_routes_via(info.operator_ifname, addresses or info.addresses())
