"""Build, destroy, load and inspect a local lab (orchestration; cleans up on failure)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from labctl.errors import LabctlError, LabError
from labctl.lab import net, services
from labctl.lab.spec import (
    DEFAULT_BASE_DIR,
    LabInfo,
    LabSpec,
    lab_from_json,
    namespaces_of,
    operator_ifname,
    overlapping_routes,
    pick_index,
    plan_lab,
    validate_name,
)

LOCK_TIMEOUT = 60.0
STOP_TIMEOUT = 3.0
# binary -> Debian package that provides it
REQUIRED_BINARIES = {
    "ip": "iproute2", "ethtool": "ethtool", "sysctl": "procps", "unshare": "util-linux",
    "ssh-keygen": "openssh-client", "/usr/sbin/sshd": "openssh-server",
    "/usr/sbin/nginx": "nginx", "hostname": "hostname",
}


@contextlib.contextmanager
def _lock(base_dir: Path) -> Iterator[None]:
    """Serialize index picking and teardown among concurrent labctl processes."""
    base_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(base_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"timed out waiting for the lab lock {base_dir / '.lock'}") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def preflight(spec: LabSpec) -> None:
    """Refuse early, before touching anything: not root, missing binary, name in use."""
    validate_name(spec.name)
    if os.geteuid() != 0:
        raise LabError("the local lab needs root (network namespaces, veths, daemons)",
                       hint="run it with sudo")
    for binary, package in REQUIRED_BINARIES.items():
        if not (os.access(binary, os.X_OK) if "/" in binary else shutil.which(binary)):
            raise LabError(f"required program {binary!r} not found",
                           hint=f"install it: apt-get install {package}")
    services.check_root_account()
    in_use = _name_in_use(spec.name, spec.base_dir)
    if in_use:
        raise LabError(f"lab name {spec.name!r} is already in use ({in_use})",
                       hint=f"pick another --name, or `labctl lab down --name {spec.name}`")


def _name_in_use(name: str, base_dir: Path) -> str:
    if (base_dir / name).exists():
        return f"{base_dir / name} exists"
    taken = sorted(set(namespaces_of(name)) & net.existing_namespaces())
    if taken:
        return f"namespace {taken[0]} exists"
    if net.root_link_exists(operator_ifname(name)):
        return f"link {operator_ifname(name)} exists"
    return ""


def _used_indices(base_dir: Path) -> set[int]:
    used = set()
    for d in base_dir.iterdir() if base_dir.exists() else []:
        path = d / "lab.json"
        if path.exists():
            try:
                used.add(lab_from_json(path.read_text(), str(path)).index)
            except LabError:
                continue
        elif (d / "index").exists():
            with contextlib.suppress(ValueError, OSError):
                used.add(int((d / "index").read_text()))
    return used


def build_lab(spec: LabSpec) -> LabInfo:
    """Build the lab; on any failure destroy what was built and raise LabError saying why."""
    preflight(spec)
    with _lock(spec.base_dir):
        if _name_in_use(spec.name, spec.base_dir):  # lost a race with a concurrent build
            raise LabError(f"lab name {spec.name!r} is already in use")
        info = _reserve(spec)
    try:
        info = _build(spec, info)
    except BaseException as exc:
        reason = exc.message if isinstance(exc, LabctlError) else f"{type(exc).__name__}: {exc}"
        try:
            destroy_lab(spec.name, spec.base_dir)
            cleaned = "everything it built was removed"
        except LabctlError as cleanup_exc:
            cleaned = f"cleanup also failed: {cleanup_exc.message}"
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise LabError(f"building lab {spec.name!r} failed: {reason}; {cleaned}",
                       hint=getattr(exc, "hint", None)) from None
    info = info.with_pids(info.pids, time.time())
    info.json_path.write_text(info.to_json())
    return info


def _reserve(spec: LabSpec) -> LabInfo:
    """Pick the index and create the lab dir (which reserves name and index); lock held."""
    routes = net.root_routes()
    if spec.index is not None:
        clash = overlapping_routes(spec.index, routes)
        if clash:
            raise LabError(f"lab index {spec.index} overlaps root-namespace route(s) "
                           f"{', '.join(clash)}", hint="let labctl pick a free index")
        index = spec.index
    else:
        index = pick_index(_used_indices(spec.base_dir), routes)
    info = plan_lab(spec.name, index, spec.base_dir, spec.online_hosts, spec.targets)
    info.dir.mkdir(mode=0o755)
    try:
        os.chmod(info.dir, 0o755)
        (info.dir / "index").write_text(f"{index}\n")  # reserves the index for other builds
    except OSError:
        shutil.rmtree(info.dir, ignore_errors=True)
        raise
    return info


def _build(spec: LabSpec, info: LabInfo) -> LabInfo:
    net.create_namespaces(info.namespaces)
    ns_sysctls = {h.netns: net.HOST_SYSCTLS for h in info.hosts.values()}
    ns_sysctls[info.router_ns] = net.ROUTER_SYSCTLS
    net.set_sysctls(ns_sysctls)
    net.build_network(info)
    if spec.offloads_off:
        links, root_links = net.offload_links(info)
        net.offloads_off(links, root_links)
    services.write_files(info)
    pids = services.start_services(info)
    info = info.with_pids(pids, time.time())
    info.json_path.write_text(info.to_json())
    net.assert_routes_via_lab(info)
    return info


def load_lab(name: str, base_dir: Path = DEFAULT_BASE_DIR) -> LabInfo:
    """The LabInfo saved by build_lab; LabError if the lab does not exist."""
    validate_name(name)
    path = Path(base_dir) / name / "lab.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LabError(f"no lab named {name!r} ({path} not found)",
                       hint="build one with `labctl lab up --name NAME`") from None
    return lab_from_json(text, str(path))


def list_labs(base_dir: Path = DEFAULT_BASE_DIR) -> list[str]:
    if not base_dir.exists():
        return []
    return sorted(d.name for d in base_dir.iterdir() if d.is_dir())


# --- destroy --------------------------------------------------------------------------------

def destroy_lab(name: str, base_dir: Path = DEFAULT_BASE_DIR) -> bool:
    """Stop the lab's processes, delete its namespaces, link and dir. Idempotent.

    Returns True if anything of the lab was found. Works on a half-built lab.
    """
    validate_name(name)
    base_dir = Path(base_dir)
    labdir = base_dir / name
    names = namespaces_of(name)
    with _lock(base_dir):
        present = set(names) & net.existing_namespaces()
        found = bool(present) or labdir.exists()
        _stop_processes(labdir, names)
        try:
            with net.netlink_errors("removing the lab's link and namespaces"):
                if net.root_link_exists(operator_ifname(name)):
                    found = True
                    net.delete_root_link(operator_ifname(name))
                for ns in names:
                    net.remove_namespace(ns)
        except (LabError, OSError) as exc:
            raise LabError(f"destroying lab {name!r}: {exc}") from None
        shutil.rmtree(labdir, ignore_errors=True)
        if labdir.exists():
            raise LabError(f"destroying lab {name!r}: could not remove {labdir}")
    return found


def _stop_processes(labdir: Path, names: list[str]) -> None:
    """SIGTERM pidfile pids and every process in the lab's namespaces; SIGKILL stragglers."""
    pids = set()
    for pidfile in labdir.glob("*/*.pid") if labdir.exists() else []:
        pid = services.read_pid(pidfile)
        if pid and net.pid_in_namespaces(pid, names):
            pids.add(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for ns in names:
            pids.update(net.ns_pids(ns))
        pids = {p for p in pids if services.pid_alive(p)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_gone(pids, STOP_TIMEOUT):
            return
    left = sorted(p for p in pids if services.pid_alive(p))
    raise LabError(f"processes {left} in the lab's namespaces did not exit")


def _wait_gone(pids: set[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(services.pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- status ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: Optional[int]
    alive: bool
    listening: bool
    port: int


@dataclass(frozen=True)
class HostStatus:
    role: str
    netns: str
    address: str
    netns_present: bool
    services: list[ServiceStatus] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.netns_present and all(s.alive and s.listening for s in self.services)


@dataclass(frozen=True)
class LabStatus:
    info: LabInfo
    hosts: list[HostStatus]
    operator_link: bool

    @property
    def up(self) -> bool:
        return self.operator_link and all(h.up for h in self.hosts)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.info.name, "index": self.info.index, "up": self.up,
            "dir": str(self.info.dir), "lab_json": str(self.info.json_path),
            "operator_address": self.info.operator_address,
            "operator_ifname": self.info.operator_ifname, "operator_link": self.operator_link,
            "hosts": [
                {"role": h.role, "netns": h.netns, "address": h.address, "up": h.up,
                 "netns_present": h.netns_present,
                 "services": [s.__dict__ for s in h.services]}
                for h in self.hosts
            ],
        }


def lab_status(name: str, base_dir: Path = DEFAULT_BASE_DIR) -> LabStatus:
    """What is running of lab `name`: namespaces, daemons alive and listening, root link."""
    info = load_lab(name, base_dir)
    present = net.existing_namespaces()
    hosts = []
    for host in info.hosts.values():
        svcs = []
        for svc in services.service_names(host):
            port = host.ssh_port if svc == "sshd" else 80
            pid = services.read_pid(services.pid_file(host, svc))
            alive = pid is not None and services.pid_alive(pid)
            listen = alive and pid is not None and services.listening(pid, host.address, port)
            svcs.append(ServiceStatus(svc, pid, alive, listen, port))
        hosts.append(HostStatus(host.role, host.netns, host.address,
                                host.netns in present, svcs))
    return LabStatus(info, hosts, net.root_link_exists(info.operator_ifname))
