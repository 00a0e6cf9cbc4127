"""intercept daemon in ad-hoc namespaces: routing of spoofed responses, auth, hostile clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any, Callable, Dict

import pytest

from tests.integration.test_rawsock import PY, REPO, SEND, NsPair, ns_pair  # noqa: F401

KEY = "0123456789abcdef0123456789abcdef"

CLIENT = r"""
import json, socket, sys, time
from engine import packets as P, protocol as C
mode, key = sys.argv[1], sys.argv[2].encode()
sock = socket.create_connection(("127.0.0.1", 36524), timeout=5)
t0 = time.monotonic()
if mode == "good":
    chan = C.ClientChannel(key, time.monotonic())
    chan.register(P.ip_aton("10.213.9.9"), 40000, P.ip_aton("10.213.0.1"), 80)
    got, authed = [], False
    sock.settimeout(0.2)
    deadline = time.monotonic() + 8
    sent_bad = False
    while time.monotonic() < deadline and len(got) < int(sys.argv[3]):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            data = None
        if data == b"":
            break
        for ev in chan.feed(data or b"", time.monotonic()):
            if isinstance(ev, C.Authenticated):
                authed = True
            elif isinstance(ev, C.Response):
                got.append([ev.packet.tcp.sport, ev.packet.tcp.dport, ev.packet.tcp.flags,
                            ev.packet.tcp.seq, len(ev.raw)])
        out = chan.take_output()
        if out:
            sock.sendall(out)
        if authed and not sent_bad:
            sock.sendall(C.encode_message(9, 1, 2, 3, 4))     # malformed: counted, not fatal
            sent_bad = True
            print(json.dumps({"authed": True}), flush=True)
    print(json.dumps({"got": got}), flush=True)
else:
    if mode == "c-tcpcopy":                                  # keyless C-style client
        sock.sendall(C.encode_hello() + C.encode_message(1, 1, 2, 3, 4))
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:     # closed with our bytes unread: RST instead of FIN
            break
        if not data:
            break
        received += data
    print(json.dumps({"closed_after": time.monotonic() - t0, "received": received.hex()}))
"""


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_stats(path: str) -> Dict[str, Any]:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _spoof(pair: NsPair, spec: str) -> None:
    code = SEND.replace("flags=P.ACK | P.PSH", "flags=int(item_flags[i])").replace(
        "errs = 0", "errs = 0\nitem_flags = sys.argv[4].split(',')")
    out = subprocess.run([*pair.argv(pair.a), PY, "-c", code, pair.a_ip, "10.213.9.9",
                          spec, ",".join(["18", "24", "16"][: spec.count(",") + 1])],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "0", out.stderr


@pytest.mark.integration
def test_intercept_routes_authenticates_and_survives_hostile_clients(
        ns_pair: NsPair, tmp_path: Any) -> None:  # noqa: F811
    d = str(tmp_path)
    keyf, stats, pidf, logf = (os.path.join(d, n) for n in ("key", "s.json", "i.pid", "i.log"))
    with open(keyf, "w") as fh:
        fh.write(KEY + "\n")
    subprocess.run(["ip", "-n", ns_pair.a, "route", "add", "10.213.9.0/24", "via", ns_pair.b_ip],
                   check=True, timeout=20)
    daemon = subprocess.Popen(
        [*ns_pair.argv(ns_pair.b), PY, "-m", "engine", "intercept", "-i", "eth0", "-F",
         "tcp and src port 80", "--key-file", keyf, "--stats-file", stats, "--stats-interval",
         "0.1", "-P", pidf, "-l", logf], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: read_stats(stats).get("state") == "running", 15, "intercept start")
        with open(pidf) as fh:
            assert int(fh.read()) > 0

        # an unauthenticated C-style client, and a silent one: closed < 1 s, no records
        for mode in ("c-tcpcopy", "silent"):
            res = subprocess.run([*ns_pair.argv(ns_pair.b), PY, "-c", CLIENT, mode, ""],
                                 cwd=REPO, capture_output=True, text=True, timeout=30)
            out = json.loads(res.stdout.strip().splitlines()[-1])
            assert out["closed_after"] < 1.0, (mode, out)
            assert bytes.fromhex(out["received"])[:4] == b"LCH1"
            assert len(bytes.fromhex(out["received"])) == 20        # the challenge, nothing else

        good = subprocess.Popen([*ns_pair.argv(ns_pair.b), PY, "-c", CLIENT, "good", KEY, "2"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert good.stdout is not None
            assert json.loads(good.stdout.readline()) == {"authed": True}
            wait_for(lambda: read_stats(stats).get("routes") == 1, 10, "route registered")
            # target -> fake client: SYN-ACK (18), data (24) on the route; ACK (16) elsewhere
            _spoof(ns_pair, "80:40000,80:40000,80:40001")
            out, err = good.communicate(timeout=30)
        finally:
            if good.poll() is None:
                good.kill()
                good.wait()
        got = json.loads(out.strip().splitlines()[-1])["got"]
        assert sorted(g[2] for g in got) == [18, 24], err
        assert all(g[0] == 80 and g[1] == 40000 and g[4] == 64 for g in got)

        def settled() -> Dict[str, Any]:
            s = read_stats(stats)
            return s if s.get("counters", {}).get("resp_unrouted") == 1 else {}
        counters = wait_for(settled, 10, "unrouted response counted")["counters"]
        assert counters["resp_routed"] == 2 and counters["captured"] == 3
        assert counters["clients_rejected_auth"] == 2 and counters["channel_malformed"] == 1
        assert counters["malformed"] == 0 and counters["frames_sent"] >= 1
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = daemon.wait()
    assert rc == 0, daemon.stderr.read() if daemon.stderr else ""
    final = read_stats(stats)
    assert final["state"] == "exited" and final["tool"] == "intercept"
    assert not os.path.exists(pidf)
    with open(logf) as fh:
        log = fh.read()
    assert "[notice] intercept version:" in log and "total resp packs:" in log


FLOOD = r"""
import json, socket, sys, time
n = int(sys.argv[1])
socks, t0 = [], time.monotonic()
for _ in range(n):
    socks.append(socket.create_connection(("127.0.0.1", 36524), timeout=10))
got = []
for s in socks:                        # each peer: the 20-byte challenge, then closed by intercept
    s.settimeout(15)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    got.append(len(data))
print(json.dumps({"got": got, "seconds": time.monotonic() - t0}))
"""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.integration
def test_out_of_descriptors_intercept_backs_off_and_serves_everyone_later(
        ns_pair: NsPair, tmp_path: Any) -> None:  # noqa: F811
    """RELIABILITY F3: accept() failing with EMFILE must not spin the listener at full CPU;
    the peers left in the backlog are served once descriptors are free again."""
    stats, pidf, logf = (str(tmp_path / n) for n in ("i.json", "i.pid", "i.log"))
    keyf = str(tmp_path / "key")
    with open(keyf, "w") as fh:
        fh.write(KEY + "\n")
    # 24 descriptors: the daemon's own (~10) leave room for a handful of peers at a time
    daemon = subprocess.Popen(
        [*ns_pair.argv(ns_pair.b), "prlimit", "--nofile=24:24", PY, "-m", "engine", "intercept",
         "-i", "eth0", "-F", "tcp and src port 80", "--key-file", keyf, "--stats-file", stats,
         "--stats-interval", "0.1", "-P", pidf, "-l", logf],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: read_stats(stats).get("state") == "running", 15, "intercept start")
        cpu0, t0 = _cpu_seconds(daemon.pid), time.monotonic()
        res = subprocess.run([*ns_pair.argv(ns_pair.b), PY, "-c", FLOOD, "60"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        cpu, wall = _cpu_seconds(daemon.pid) - cpu0, time.monotonic() - t0
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert daemon.poll() is None, "intercept died"
        # every peer got the challenge (and nothing else) and was closed: none left behind
        assert out["got"] == [20] * 60, out
        counters = wait_for(lambda: read_stats(stats).get("counters", {}).get("accept_errors"),
                            15, "accept errors counted")
        assert counters >= 1
        # backing off, not spinning: a spinning listener burns the CPU for the whole episode
        print(f"EMFILE episode: {wall:.2f} s wall, {cpu:.2f} s CPU, accept_errors {counters}, "
              f"peers served {len(out['got'])}")
        assert cpu < 0.5 * wall, (cpu, wall)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
