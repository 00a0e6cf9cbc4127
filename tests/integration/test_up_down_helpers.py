"""Helpers for the up/down integration tests: run the real CLI, snapshot hosts, find leftovers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labctl.facts.iptables import normalise_iptables_save
from labctl.lab.inventory import render_lab_inventory

HOSTS = ("online", "target", "assistant")
ROOT = Path(__file__).resolve().parents[2]


def labctl_argv() -> list[str]:
    exe = Path(sys.executable).parent / "labctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "import sys; from labctl.cli import main; main()"]


def hooked_argv(*hooks: str) -> list[str]:
    """labctl with test hooks, e.g. hooked_argv("--kill-after", "lock") + ["up", inventory]."""
    return [sys.executable, "-m", "tests.integration.hooked_labctl", *hooks, "--"]


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_TEST_")}
    env.update(LABCTL_STATE_DIR=str(tmp / "state"), XDG_CACHE_HOME=str(tmp / "cache"),
               LABCTL_DEADMAN_SECONDS="60", COLUMNS="200", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def labctl(
    tmp: Path, *args: str, timeout: float = 180, hooks: tuple[str, ...] = (), **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run labctl (with `hooks`, e.g. ("--kill-after", "lock"): through hooked_labctl)."""
    argv = hooked_argv(*hooks) if hooks else labctl_argv()
    return subprocess.run([*argv, *args], env=env_for(tmp, **extra), capture_output=True,
                          text=True, timeout=timeout, check=False)


def write_inventory(info: Any, tmp: Path, topology: str = "three-server",
                    edit: Any = None) -> Path:
    text = render_lab_inventory(info, topology=topology)
    if edit is not None:
        text = edit(text)
    path = tmp / f"{info.name}-{topology}.yaml"
    path.write_text(text)
    return path


def ns_run(info: Any, role: str, *argv: str) -> str:
    return subprocess.run([*info.ns_argv(role), *argv], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def normal_routes(text: str) -> str:
    """Sorted, without IPv6 link-local/multicast routes that appear late on their own."""
    keep = [ln.strip() for ln in text.splitlines()
            if ln.strip() and "fe80::" not in ln and "ff00::" not in ln]
    return "\n".join(sorted(keep))


def servers(info: Any) -> list[str]:
    """The lab's server roles (with `online2`.. `online16` / `target2` when the lab has them)."""
    extra = [r for r in info.hosts if r not in HOSTS and r != "client"]
    return [h for h in (*HOSTS, *extra) if h in info.hosts]


def snapshot(info: Any) -> dict[str, tuple[str, str]]:
    return {h: (normal_routes(ns_run(info, h, "ip", "route", "show", "table", "all")),
                normalise_iptables_save(ns_run(info, h, "iptables-save")))
            for h in servers(info)}


def tagged(info: Any) -> list[str]:
    """Anything carrying labctl's tags, and any engine process, in the lab's hosts."""
    found = []
    for h in servers(info):
        routes = ns_run(info, h, "ip", "route", "show", "table", "all", "proto", "252")
        found += [f"{h}: route {r}" for r in routes.splitlines() if r.strip()]
        rules = ns_run(info, h, "iptables-save")
        found += [f"{h}: {r}" for r in rules.splitlines() if "LABCTL" in r or "labctl:" in r]
        pids = ns_run(info, h, "ip", "netns", "pids", info.hosts[h].netns).split()
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "labctl-engine.pyz" in cmd:
                found.append(f"{h}: process {pid} {cmd}")
    return found


def send_mixed(info: Any, requests: int, connections: int = 4) -> int:
    """Mixed lab traffic from the client namespace; how many requests were sent."""
    out = subprocess.run(
        [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
         f"http://{info.hosts['online'].address}", "--requests", str(requests), "--mode",
         "mixed", "--connections", str(connections), "--json"],
        capture_output=True, text=True, timeout=300, check=True)
    return int(json.loads(out.stdout)["sent"])


def pool_prefix(info: Any) -> str:
    """The fake pool's first three octets and a dot: how copies show in the target's log."""
    return str(info.fake_pool).rsplit(".", 1)[0] + "."


def copies(info: Any, prefix: str) -> int:
    """Lines of the target's access log from addresses starting with `prefix`."""
    log = Path(info.hosts["target"].access_log)
    return sum(1 for ln in log.read_text().splitlines() if ln.startswith(prefix))


def wait_copies(info: Any, prefix: str, want: int, timeout: float = 60) -> int:
    """Until the target logged `want` copies (or `timeout` s); the count then."""
    deadline = time.monotonic() + timeout
    while copies(info, prefix) < want and time.monotonic() < deadline:
        time.sleep(0.25)
    return copies(info, prefix)


def copy_round(info: Any, requests: int, min_ratio: float = 1.0, connections: int = 4,
               timeout: float = 60) -> int:
    """Send `requests` mixed requests from the client and wait until at least `min_ratio` of
    those sent were copied to the target (asserted, counting only this round's copies); how
    many were sent."""
    prefix = pool_prefix(info)
    start = copies(info, prefix)
    sent = send_mixed(info, requests, connections)
    want = start + math.ceil(sent * min_ratio)
    got = wait_copies(info, prefix, want, timeout)
    assert got >= want, f"{got - start} of {sent} requests copied"
    return sent


def verify_until(tmp: Path, settled: Callable[[dict[str, Any]], bool], *args: str,
                 timeout: float = 20.0) -> dict[str, Any]:
    """`labctl verify --json *args` until `settled(document)` (copies trail the originals a
    little), or `timeout` s; the last document. Wait for what the test asserts: the verdict
    alone passes within `ratio_tolerance` (0.5 %), e.g. while the last copy is on its way."""
    deadline = time.monotonic() + timeout
    while True:
        res = labctl(tmp, "verify", "--json", *args)
        assert res.returncode in (0, 3), res.stdout + res.stderr
        doc = dict(json.loads(res.stdout))
        if settled(doc) or time.monotonic() >= deadline:
            return doc
        time.sleep(0.5)


def daemon_status(tmp: Path) -> dict[str, dict[str, Any]]:
    """`labctl status --json` (asserted to exit 0 without a traceback): {daemon name: record}."""
    st = labctl(tmp, "status", "--json")
    assert st.returncode == 0, st.stdout + st.stderr
    assert "Traceback" not in st.stdout + st.stderr
    return {d["name"]: d for h in json.loads(st.stdout)["hosts"] for d in h["daemons"]}


@contextmanager
def up_then_down(info: Any, tmp: Path, inv: Path, *down_args: str
                 ) -> Iterator[subprocess.CompletedProcess[str]]:
    """`labctl up INV` (asserted to exit 0), the body, then `labctl down *down_args` even when
    the body failed; after a body that passed, `down` is asserted to exit 0 without a
    traceback and to leave the lab's routes and iptables as they were before `up`, with no
    labctl chain, rule or engine process left (`snapshot`, `tagged`)."""
    before = snapshot(info)
    up = labctl(tmp, "up", str(inv))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield up
    finally:
        down = labctl(tmp, "down", *down_args)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    assert snapshot(info) == before
    assert tagged(info) == []



_CONNECT = (
    "import socket,sys\n"
    "s=socket.socket()\n"
    "s.settimeout(float(sys.argv[3]))\n"
    "try:\n"
    "    s.connect((sys.argv[1],int(sys.argv[2])))\n"
    "    print('connected')\n"
    "except socket.timeout:\n"
    "    print('timeout')\n"
    "except ConnectionRefusedError:\n"
    "    print('refused')\n"
    "except OSError as e:\n"
    "    print('error', e.errno)\n"
)


def connect_from(info: Any, role: str, address: str, port: int, timeout: float = 3.0) -> str:
    """A TCP connect from host `role`'s namespace: connected, timeout (dropped) or refused."""
    out = subprocess.run([*info.ns_argv(role), sys.executable, "-c", _CONNECT, address,
                          str(port), str(timeout)], capture_output=True, text=True,
                         timeout=timeout + 30, check=True)
    return out.stdout.strip()
