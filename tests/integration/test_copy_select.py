"""Per-request selection with the real daemons in a lab (tcpcopy + intercept started directly):
on one keep-alive connection only the selected requests reach the target, in order, with their
bodies (Content-Length and chunked), on a clean connection; `--safe` never repeats a write;
`--allow-host` copies one virtual host's connections and never opens the others'."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any, Dict, List, Tuple

import pytest

from tests.integration.copyrig import Rig, settle, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# a tiny HTTP/1.1 client run in the client namespace: one connection per list item, requests
# sent in order (heads and bodies in separate segments), each response read before the next
CLIENT = r'''
import json, socket, sys, time
def read_response(sock, buf, head_only):
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed early")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
        if k.strip().lower() == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if head_only:
        return status, rest
    if chunked:
        while not rest.endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
        return status, b""
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, rest[length:]
out = []
for conn in json.loads(sys.argv[1]):
    s = socket.create_connection((sys.argv[2], 80))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for parts in conn:
        for i, part in enumerate(parts):
            s.sendall(part.encode("latin-1"))
            if i + 1 < len(parts):
                time.sleep(0.02)          # the next part in its own segment
        status, buf = read_response(s, buf, parts[0].startswith("HEAD "))
        out.append(status)
    s.close()
print(json.dumps(out))
'''


def cl_post(path: str, body: str) -> List[str]:
    return [f"POST {path} HTTP/1.1\r\nHost: a.example\r\nContent-Length: {len(body)}\r\n\r\n",
            body]


def chunked_post(path: str, body: str) -> List[str]:
    half = len(body) // 2
    return [f"POST {path} HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n",
            f"{half:x};ext=1\r\n{body[:half]}\r\n",
            f"{len(body) - half:x}\r\n{body[half:]}\r\n0\r\nX-Trailer: t\r\n\r\n"]


def get(path: str, host: str = "a.example", method: str = "GET") -> List[str]:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: select-test\r\n\r\n"
    return [head[:17], head[17:]]            # the head itself split across two segments


def run_client(rig: Rig, conns: List[List[List[str]]]) -> List[int]:
    out = subprocess.run([*rig.lab.ns_argv("client"), sys.executable, "-c", CLIENT,
                          json.dumps(conns), str(rig.online)],
                         capture_output=True, text=True, timeout=60, check=True)
    return [int(s) for s in json.loads(out.stdout)]


LINE = re.compile(r'^(\S+) \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d+) \d+ \d+ "([^"]*)" \S+ (\d+) (\d+)')


def log_lines(rig: Rig, role: str) -> List[Tuple[str, str, str, str, str, int]]:
    """(client, method, uri, status, content_length, connection requests) of each line."""
    path = rig.lab.host(role).access_log
    out = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        m = LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3), m.group(4), m.group(5),
                        int(m.group(7))))
    return out


def copies(rig: Rig) -> List[Tuple[str, str, str, str, str, int]]:
    return [x for x in log_lines(rig, "target") if x[0].startswith(rig.fake_prefix)]


def counters(rig: Rig) -> Dict[str, Any]:
    return wait_for(lambda: (rig.stats("tcpcopy") or {}).get("select") and rig.stats("tcpcopy"),
                    10, "the selection in tcpcopy's stats")


def start(rig: Rig, *flags: str) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(list(flags))


def test_one_keep_alive_connection_carries_only_the_selected_requests(rig: Rig) -> None:
    start(rig, "--allow-path", "/api", "--allow-path", "/echo")
    body1 = "".join(chr(65 + i % 26) for i in range(1000))
    body2 = "x" * 700 + "y" * 333
    conn = [get("/api/one?i=1"), get("/static/a.css?i=2"), cl_post("/echo?i=3", body1),
            chunked_post("/api/two?i=4", "z" * 40), get("/static/b.js?i=5"),
            chunked_post("/echo?i=6", body2), get("/api/three?i=7")]
    statuses = run_client(rig, [conn])
    assert len(statuses) == 7 and 400 not in statuses, statuses
    online = [x for x in log_lines(rig, "online")]
    assert len(online) == 7, online
    want = [(m, u, st, cl) for _c, m, u, st, cl, _n in online
            if u.startswith(("/api", "/echo"))]
    assert len(want) == 5
    got = wait_for(lambda: len(copies(rig)) >= 5 and copies(rig), 20, "5 copies")
    settle(rig, 6, timeout=3, quiet=1.5)                    # nothing more comes
    got = copies(rig)
    # exactly the selected requests, in order, bodies of the same length, same answers
    assert [(m, u, st, cl) for _c, m, u, st, cl, _n in got] == want, got
    assert [n for *_x, n in got] == [1, 2, 3, 4, 5]         # one clean connection
    stats = counters(rig)
    c = stats["counters"]
    assert c["requests_selected"] == 5 and c["requests_skipped"] == 2, c
    assert c["sessions_unselected"] == 0 and c["streams_unparsable"] == 0, c
    assert stats["select"]["rules"] == ["--allow-path /api", "--allow-path /echo"]
    assert not [line for line in rig.lab.host("target").error_log.read_text().splitlines()
                if "client sent" in line], "the target's nginx rejected a copied request"


def test_safe_mode_never_repeats_a_write(rig: Rig) -> None:
    start(rig, "--safe")
    conn = [get("/?i=1"), cl_post("/echo?i=2", "w" * 100), get("/?i=3", method="HEAD"),
            get("/?i=4", method="DELETE"), chunked_post("/echo?i=5", "p" * 50),
            get("/?i=6"), get("/?i=7", method="OPTIONS")]
    writes = [get(f"/?w={i}", method=m) for i, m in enumerate(("PUT", "PATCH", "DELETE"))]
    run_client(rig, [conn, writes, [get("/?i=8")]])
    got = wait_for(lambda: len(copies(rig)) >= 5 and copies(rig), 20, "5 copies")
    settle(rig, 6, timeout=3, quiet=1.5)
    got = copies(rig)
    assert sorted(m for _c, m, *_r in got) == ["GET", "GET", "GET", "HEAD", "OPTIONS"], got
    c = counters(rig)["counters"]
    assert c["requests_skipped"] == 6 and c["sessions_unselected"] == 1, c


def test_allow_host_copies_one_virtual_host_on_new_and_keep_alive_connections(
        rig: Rig) -> None:
    start(rig, "--allow-host", "a.example")
    new = [[get(f"/?h={h}&i={i}", host=f"{h}.example")] for i in range(30) for h in "ab"]
    keep = [[get(f"/?h={h}&k={i}", host=f"{h}.example") for i in range(20) for h in "ab"]]
    run_client(rig, new + keep)
    online = log_lines(rig, "online")
    assert len(online) == 100
    want = sorted(u for _c, _m, u, *_r in online if "h=a" in u)
    got = wait_for(lambda: len(copies(rig)) >= 50 and copies(rig), 30, "50 copies")
    settle(rig, 51, timeout=3, quiet=1.5)
    got = copies(rig)
    assert sorted(u for _c, _m, u, *_r in got) == want      # all of a, none of b
    c = counters(rig)["counters"]
    # b's 30 new connections were never opened at the target
    assert c["sessions_unselected"] == 30 and c["requests_skipped"] == 50, c
    assert c["sent_syn"] == 31, c
