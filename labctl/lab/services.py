"""sshd and nginx of the lab: keys, known_hosts, rendered configs, start and readiness.

Rendering is pure (`render_*`); the rest writes files under the lab dir and starts daemons.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import jinja2

from labctl.errors import LabError
from labctl.lab.net import run_all
from labctl.lab.spec import HostInfo, LabInfo

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates" / "lab"
SSHD = "/usr/sbin/sshd"  # absolute: sshd refuses to re-exec otherwise (findings P2)
NGINX = "/usr/sbin/nginx"
ECHO_PORT = 8081
SLOW_RATE = 16384
SLOW_BYTES = 2 * SLOW_RATE  # nginx sends the first `rate` bytes at once, the rest ~1 s later
BIG_BYTES = 1048576
READY_TIMEOUT = 10.0
# Runs `cmd...` with hostname $1 in a fresh UTS namespace; arguments stay argv, never parsed.
HOSTNAME_WRAPPER = 'hostname "$1" && shift && exec "$@"'


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )


def render_nginx_conf(info: LabInfo, host: HostInfo) -> str:
    """nginx.conf of an nginx host: own pid, logs, temp paths; the default server and the
    virtual hosts a.example and b.example, each with /, /echo, /api/, /static/, /slow, /big."""
    return _env().get_template("nginx.conf.j2").render(
        lab=info.name, role=host.role, address=host.address, dir=host.dir,
        www=host.dir / "www", access_log=host.access_log, error_log=host.error_log,
        bodies_log=bodies_log(host),
        echo_port=ECHO_PORT, slow_rate=SLOW_RATE, slow_bytes=SLOW_BYTES,
    )


def bodies_log(host: HostInfo) -> Path:
    """The nginx host's log of request bodies (`$request_method $request_uri $request_body`,
    JSON-escaped), next to its access log."""
    return host.dir / "bodies.log"


def render_sshd_config(info: LabInfo, host: HostInfo) -> str:
    """sshd_config of a server host: key-only root login, own host key, pid file and address."""
    return _env().get_template("sshd_config.j2").render(
        lab=info.name, role=host.role, address=host.address, port=host.ssh_port,
        host_key=host_key_path(host), pid_file=pid_file(host, "sshd"),
        authorized_keys=info.authorized_keys,
    )


def render_index(info: LabInfo, host: HostInfo) -> str:
    return _env().get_template("index.html.j2").render(lab=info.name, role=host.role)


def host_key_path(host: HostInfo) -> Path:
    return host.dir / "ssh_host_ed25519_key"


def pid_file(host: HostInfo, service: str) -> Path:
    return host.dir / f"{service}.pid"


def service_names(host: HostInfo) -> list[str]:
    """Services a host runs: sshd on servers, nginx on online and target."""
    return (["sshd"] if host.has_sshd else []) + (["nginx"] if host.has_nginx else [])


def known_hosts_text(entries: list[tuple[str, int, str]]) -> str:
    """known_hosts lines for (address, port, 'ssh-ed25519 AAAA...') entries."""
    lines = []
    for address, port, key in entries:
        where = address if port == 22 else f"[{address}]:{port}"
        lines.append(f"{where} {' '.join(key.split()[:2])}")
    return "\n".join(lines) + "\n"


# --- files ----------------------------------------------------------------------------------

def write_files(info: LabInfo) -> None:
    """Create host dirs, configs, static pages and keys (operator key, host keys, known_hosts)."""
    for host in info.hosts.values():
        host.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        if host.has_nginx:
            _write_nginx_files(info, host)
        if host.has_sshd:
            (host.dir / "sshd_config").write_text(render_sshd_config(info, host))
    _write_keys(info)


def _write_nginx_files(info: LabInfo, host: HostInfo) -> None:
    www = host.dir / "www"
    www.mkdir(mode=0o755, exist_ok=True)
    (host.dir / "tmp").mkdir(mode=0o755, exist_ok=True)
    (www / "index.html").write_text(render_index(info, host))
    pattern = f"labctl {host.role} payload\n".encode()
    (www / "big.bin").write_bytes((pattern * (BIG_BYTES // len(pattern) + 1))[:BIG_BYTES])
    (www / "slow.bin").write_bytes((pattern * (SLOW_BYTES // len(pattern) + 1))[:SLOW_BYTES])
    (host.dir / "nginx.conf").write_text(render_nginx_conf(info, host))


def _write_keys(info: LabInfo) -> None:
    servers = [h for h in info.hosts.values() if h.has_sshd]
    keys = [info.ssh_key] + [host_key_path(h) for h in servers]
    for k in keys:
        for p in (k, k.with_name(k.name + ".pub")):
            p.unlink(missing_ok=True)
    run_all([["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labctl-{info.name}",
              "-f", str(k)] for k in keys], "generating ssh keys")
    pub = info.ssh_key.with_name(info.ssh_key.name + ".pub").read_text()
    info.authorized_keys.write_text(pub)
    os.chmod(info.authorized_keys, 0o644)
    entries = [(h.address, h.ssh_port, host_key_path(h).with_suffix(".pub").read_text())
               for h in servers]
    info.known_hosts.write_text(known_hosts_text(entries))


# --- daemons --------------------------------------------------------------------------------

def start_argv(info: LabInfo, host: HostInfo, service: str) -> list[str]:
    """The argv that starts `service` of `host` inside its namespace (daemonizing itself)."""
    ns = ["ip", "netns", "exec", host.netns]
    if service == "sshd":
        return [*ns, "unshare", "--uts", "--", "/bin/sh", "-c", HOSTNAME_WRAPPER, "sh",
                host.hostname, SSHD, "-f", str(host.dir / "sshd_config"),
                "-E", str(host.dir / "sshd.log")]
    return [*ns, "unshare", "--uts", "--", "/bin/sh", "-c", HOSTNAME_WRAPPER, "sh",
            host.hostname, NGINX, "-e", str(host.error_log), "-p", str(host.dir),
            "-c", str(host.dir / "nginx.conf")]


def start_services(info: LabInfo) -> dict[str, int]:
    """Start every daemon in parallel; return {"<role>/<service>": pid} once all are ready."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir (P1)
    jobs = [(h, s) for h in info.hosts.values() for s in service_names(h)]
    run_all([start_argv(info, h, s) for h, s in jobs], "starting lab daemons")
    pids = {}
    deadline = time.monotonic() + READY_TIMEOUT
    for host, service in jobs:
        pids[f"{host.role}/{service}"] = wait_pid_file(host, service, deadline)
    return pids


def wait_pid_file(host: HostInfo, service: str, deadline: float) -> int:
    """Wait until the pid file names a live process; raise LabError with the log tail if not."""
    path = pid_file(host, service)
    while True:
        pid = read_pid(path)
        if pid is not None and pid_alive(pid):
            return pid
        if time.monotonic() > deadline:
            log = host.dir / "sshd.log" if service == "sshd" else host.error_log
            raise LabError(
                f"{service} on {host.role} did not start (no live pid in {path})"
                f"{_tail(log)}", host=host.role)
        time.sleep(0.01)


def _tail(log: Optional[Path]) -> str:
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").strip().splitlines()[-3:]
    return (": " + " | ".join(lines)) if lines else ""


def read_pid(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (PID 1 here reaps orphans late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def root_login_locked(shadow: str) -> bool:
    """True if root's shadow password field is locked ('!...'): sshd with UsePAM no refuses (P4)."""
    for line in shadow.splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1:
            return fields[1].startswith("!")
    return False


def check_root_account() -> None:
    try:
        shadow = Path("/etc/shadow").read_text()
    except OSError:
        return
    if root_login_locked(shadow):
        raise LabError(
            "root's account is locked in /etc/shadow: the lab sshd (UsePAM no) would refuse "
            "even key logins", hint="unlock key logins with `usermod -p '*' root`")


def listening(pid: int, address: str, port: int) -> bool:
    """True if the network namespace of `pid` has a TCP listener on address:port (or any)."""
    try:
        text = Path(f"/proc/{pid}/net/tcp").read_text()
    except OSError:
        return False
    return (address, port) in listeners(text) or ("0.0.0.0", port) in listeners(text)


def listeners(proc_net_tcp: str) -> set[tuple[str, int]]:
    """(address, port) of LISTEN sockets in a /proc/net/tcp text."""
    out = set()
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        hexaddr, hexport = parts[1].split(":")
        raw = bytes.fromhex(hexaddr)[::-1]
        out.add((".".join(str(b) for b in raw), int(hexport, 16)))
    return out

