"""Hosts for unit tests of `up`: FakeTransports that answer the facts from recordings and every
command `up` runs from an explicit rule (no catch-all: anything else raises UnscriptedCommand).

The file commands (`mkdir`, `mv -f`, `rm -f`, `cat`, `sha256sum`) act on the fake's `files`, so
an uploaded engine hashes to what was uploaded and a written journal can be read back. Daemons
start and are ready at once: the detach launcher prints a pid, `/proc/PID/cmdline` names the
daemon, intercept listens, tcpcopy's stats file reports its intercept connected.
"""

from __future__ import annotations

import hashlib
import json
import re

from labctl.transport.base import Result
from labctl.transport.fake import FakeTransport
from labctl.up.plan import NONEMPTY
from tests.unit.test_facts_gather import scripted

PID = 4242
CONNECTED = {"intercepts": [{"address": "assistant:36524", "connections": 1}]}


def _ok(fake: FakeTransport, argv: tuple[str, ...], stdout: str = "") -> Result:
    return Result(fake.host, argv, 0, stdout)


def _missing(fake: FakeTransport, argv: tuple[str, ...], path: str) -> Result:
    return Result(fake.host, argv, 1, "", f"{argv[0]}: {path}: No such file or directory")


def _file_rules(fake: FakeTransport) -> None:
    files = fake.files

    def mv(argv: tuple[str, ...]) -> Result:
        src, dst = argv[-2], argv[-1]
        if src not in files:
            return _missing(fake, argv, src)
        files[dst] = files.pop(src)
        return _ok(fake, argv)

    def rm(argv: tuple[str, ...]) -> Result:
        for path in argv[2:]:
            for name in [f for f in files if f == path or f.startswith(path + "/")]:
                del files[name]
        return _ok(fake, argv)

    def cat(argv: tuple[str, ...]) -> Result:
        if argv[1] in files:
            return _ok(fake, argv, files[argv[1]].decode())
        if re.fullmatch(r"/proc/\d+/cmdline", argv[1]):
            return _proc_cmdline(fake, argv)
        return _missing(fake, argv, argv[1])

    def sha256sum(argv: tuple[str, ...]) -> Result:
        if argv[1] not in files:
            return _missing(fake, argv, argv[1])
        return _ok(fake, argv, f"{hashlib.sha256(files[argv[1]]).hexdigest()}  {argv[1]}\n")

    fake.on_prefix(["mkdir"])
    fake.on_prefix(["mv", "-f"], handler=mv)
    fake.on_prefix(["rm", "-f"], handler=rm)
    fake.on_prefix(["rm", "-rf"], handler=rm)
    fake.on_prefix(["cat"], handler=cat)
    fake.on_prefix(["sha256sum"], handler=sha256sum)
    fake.on_prefix(["touch"])


def _proc_cmdline(fake: FakeTransport, argv: tuple[str, ...]) -> Result:
    """The daemon (or timer) whose pidfile holds this pid, as its cmdline would name it."""
    pid = argv[1].split("/")[2]
    for path, data in fake.files.items():
        if path.endswith(".pid") and data.decode().strip() == pid:
            name = path.rsplit("/", 1)[-1][: -len(".pid")]
            stats = path[: -len(".pid")] + ".stats"
            return _ok(fake, argv, f"python3\0engine.pyz\0{name}\0--stats-file\0{stats}\0")
    return _missing(fake, argv, argv[1])


def _daemon_rules(fake: FakeTransport) -> None:
    def detach(argv: tuple[str, ...]) -> Result:
        pid_file = argv[argv.index("--pid-file") + 1]
        fake.files[pid_file] = f"{PID}\n".encode()
        inner = argv[argv.index("--") + 1:]
        stats = inner[inner.index("--stats-file") + 1]
        fake.files[stats] = json.dumps({"state": "running", **CONNECTED}).encode()
        return _ok(fake, argv, f"started {PID}\n")

    def term(argv: tuple[str, ...]) -> Result:  # the daemon exits at once, removing its pidfile
        for path in [p for p, d in fake.files.items() if p.endswith(".pid")
                     and d.decode().strip() == argv[2]]:
            del fake.files[path]
        return _ok(fake, argv)

    fake.on_regex(r"^python3 \S+labctl-engine\.pyz detach ", handler=detach)
    fake.on_prefix(["ss", "-Hltn", "sport", "="], stdout="LISTEN 0 128 0.0.0.0:36524 0.0.0.0:*\n")
    fake.on_prefix(["kill", "-TERM"], handler=term)
    fake.on_prefix(["pkill", "-TERM", "-F"])


def _deadman_rules(fake: FakeTransport) -> None:
    def arm(argv: tuple[str, ...]) -> Result:
        pid_file = argv[argv.index("--pid-file") + 1] if "--pid-file" in argv else ""
        if pid_file:
            fake.files[pid_file] = f"{PID + 1}\n".encode()
        return _ok(fake, argv, f"{PID + 1}\n")

    fake.on_regex(r"^python3 \S+labctl-engine\.pyz rollback ", handler=arm)


def _change_rules(fake: FakeTransport) -> None:
    """The changes of the staging plan: probes say "not in place yet", the changes succeed."""
    fake.on_regex(r"^iptables -w -t \S+ -C ", exit_code=1)  # -C probes: not there yet
    for verb in ("-N", "-A", "-I", "-D", "-F", "-X"):
        fake.on_regex(rf"^iptables -w -t \S+ {verb} ")
    routes: list[str] = []  # what labctl added (proto 252), as `ip route show` prints it

    def route(argv: tuple[str, ...]) -> Result:
        line = " ".join(argv[3:])
        if argv[2] == "add":
            routes.append(line)
        else:  # `ip route del NET ...` removes the route to NET
            routes[:] = [r for r in routes if r.split()[0] != argv[3]]
        return _ok(fake, argv)

    def in_place(argv: tuple[str, ...]) -> Result:  # the NONEMPTY probe of a route change
        shown = argv[3:]
        there = shown[:3] == ("ip", "route", "show") and any(
            r.split()[0] == shown[shown.index("exact") + 1] for r in routes)
        return Result(fake.host, argv, 0 if there else 1, "")

    fake.on_prefix(["python3", "-c", NONEMPTY], handler=in_place)
    fake.on_prefix(["ip", "route", "add"], handler=route)
    fake.on_prefix(["ip", "route", "del"], handler=route)
    fake.on(["ip", "-4", "route", "show", "table", "all", "proto", "252"],
            handler=lambda argv: _ok(fake, argv, "".join(r + "\n" for r in routes)))
    fake.on_prefix(["sysctl", "-w"])
    fake.on(["true"])
    fake.on(["ip", "route", "show", "table", "all"], stdout="default via 192.168.44.1 dev eth0\n")


def _verify_rules(fake: FakeTransport) -> None:
    """Where the access logs end (for `verify --since-up`): 1,000 bytes, inode 77; the rotated
    file does not exist."""
    def stat(argv: tuple[str, ...]) -> Result:
        return _ok(fake, argv, f"{argv[3]} 1000 77\n")

    fake.on_prefix(["stat", "-c", "%n %s %i"], handler=stat)
    fake.on_prefix(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"], stdout="1\n262144\n")


def simulated_host(name: str) -> FakeTransport:
    """A host of inventories/staging.yaml that `up`, `status` and `down` can run against."""
    fake = scripted(name)
    _file_rules(fake)
    _daemon_rules(fake)
    _deadman_rules(fake)
    _change_rules(fake)
    _verify_rules(fake)
    return fake
