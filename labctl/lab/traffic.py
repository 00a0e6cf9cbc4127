"""HTTP traffic generator for the lab (standard library only; run inside the client namespace).

    ip netns exec lc-NAME-client python -m labctl.lab.traffic --url http://10.77.N.10 \\
        --requests 1000 --mode keepalive|new|mixed [--connections C] [--rate R] \\
        [--post-sizes 0,1024,1048576] [--source 10.78.N.11] [--json]

Requests cycle deterministically through the plan: `GET <path>` for each --get-paths entry, then
`POST /echo` with each --post-sizes body. The summary is the truth of what was sent: attempted,
sent (request fully written), ok (2xx with a correct /echo answer), errors, and per
(method, uri, body_len) counts. Exit status: 0 all ok, 1 some requests failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Optional
from urllib.parse import urlsplit

MODES = ("keepalive", "new", "mixed")
MAX_BODY = 8 * 1024 * 1024
MIXED_MAX_BURST = 20
USER_AGENT = "labctl-traffic/1"


class Item:
    """One planned request: method, URI (path, without the optional sequence query) and body."""

    __slots__ = ("body_len", "method", "uri")

    def __init__(self, method: str, uri: str, body_len: int) -> None:
        self.method, self.uri, self.body_len = method, uri, body_len

    def key(self) -> str:
        return f"{self.method} {self.uri} {self.body_len}"


def parse_sizes(text: str) -> list[int]:
    """'0,1024,1m' -> [0, 1024, 1048576]; k/m suffixes are powers of 1024."""
    sizes = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        mult = {"k": 1024, "m": 1024 * 1024}.get(part[-1], 1)
        digits = part[:-1] if mult != 1 else part
        if not digits.isdigit():
            raise ValueError(f"--post-sizes: {part!r} is not a size (e.g. 0,1024,64k,1m)")
        size = int(digits) * mult
        if size > MAX_BODY:
            raise ValueError(f"--post-sizes: {part!r} exceeds {MAX_BODY} bytes")
        sizes.append(size)
    return sizes


def build_plan(get_paths: list[str], post_sizes: list[int], echo_path: str = "/echo") -> list[Item]:
    plan = [Item("GET", p, 0) for p in get_paths]
    plan += [Item("POST", echo_path, s) for s in post_sizes]
    if not plan:
        raise ValueError("nothing to send: give --get-paths and/or --post-sizes")
    return plan


class Tally:
    """Counts of one worker; merged at the end (no shared mutable state on the hot path)."""

    def __init__(self) -> None:
        self.attempted: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.error_kinds: Counter[str] = Counter()
        self.connections = 0

    def merge(self, other: Tally) -> None:
        for name in ("attempted", "sent", "ok", "status", "error_kinds"):
            getattr(self, name).update(getattr(other, name))
        self.connections += other.connections


def summarize(
    tally: Tally, plan: list[Item], elapsed: float, meta: dict[str, Any]
) -> dict[str, Any]:
    """The JSON truth summary."""
    attempted = sum(tally.attempted.values())
    ok = sum(tally.ok.values())
    by_request = []
    for item in plan:
        k = item.key()
        if tally.attempted[k]:
            by_request.append({
                "method": item.method, "uri": item.uri, "body_len": item.body_len,
                "attempted": tally.attempted[k], "sent": tally.sent[k], "ok": tally.ok[k],
                "errors": tally.attempted[k] - tally.ok[k],
            })
    return {
        **meta, "attempted": attempted, "sent": sum(tally.sent.values()), "ok": ok,
        "errors": attempted - ok, "error_kinds": dict(tally.error_kinds),
        "status": dict(tally.status), "connections_opened": tally.connections,
        "by_request": by_request, "elapsed": round(elapsed, 6),
        "rate": round(ok / elapsed, 3) if elapsed > 0 else 0.0,
    }


class Dispatcher:
    """Hands out request numbers 0..N-1 to workers, pacing them at `rate` per second if set."""

    def __init__(self, total: int, rate: Optional[float]) -> None:
        self.total, self.rate = total, rate
        self._next = 0
        self._lock = threading.Lock()
        self.start = time.monotonic()

    def take(self) -> Optional[int]:
        with self._lock:
            n = self._next
            if n >= self.total:
                return None
            self._next += 1
        if self.rate:
            delay = self.start + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return n


class Worker(threading.Thread):
    """One client connection slot: keeps a connection open or opens one per request."""

    def __init__(self, args: argparse.Namespace, plan: list[Item], bodies: dict[int, bytes],
                 disp: Dispatcher, source: Optional[str], seed: int) -> None:
        super().__init__(daemon=True)
        self.args, self.plan, self.bodies, self.disp = args, plan, bodies, disp
        self.source = source
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.conn: Optional[http.client.HTTPConnection] = None
        self.left_on_conn = 0

    def run(self) -> None:
        try:
            while True:
                n = self.disp.take()
                if n is None:
                    return
                self.one(n)
        finally:
            self.close()

    def connect(self) -> http.client.HTTPConnection:
        a = self.args
        src = (self.source, 0) if self.source else None
        conn = http.client.HTTPConnection(a.host, a.port, timeout=a.timeout, source_address=src)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tally.connections += 1
        mode = a.mode
        self.left_on_conn = {"keepalive": -1, "new": 1}.get(
            mode, self.rng.randint(1, MIXED_MAX_BURST))
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def one(self, n: int) -> None:
        item = self.plan[n % len(self.plan)]
        key = item.key()
        self.tally.attempted[key] += 1
        try:
            if self.conn is None:
                self.conn = self.connect()
            self.left_on_conn -= 1
            last = self.left_on_conn == 0
            self.send(item, n, last)
            self.tally.sent[key] += 1
            status, body = self.receive(last)
            self.tally.status[str(status)] += 1
            if last:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.tally.error_kinds[type(exc).__name__] += 1
            self.close()
            return
        if not 200 <= status < 300:
            self.tally.error_kinds[f"http_{status}"] += 1
        elif item.method == "POST" and body.strip() != str(item.body_len).encode():
            self.tally.error_kinds["echo_mismatch"] += 1
        else:
            self.tally.ok[key] += 1

    def send(self, item: Item, n: int, last: bool) -> None:
        assert self.conn is not None
        uri = f"{item.uri}?seq={n}" if self.args.seq_query else item.uri
        headers = {"User-Agent": self.args.user_agent}
        if last:
            headers["Connection"] = "close"
        body = self.bodies[item.body_len] if item.method == "POST" else None
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        self.conn.request(item.method, uri, body=body, headers=headers)

    def receive(self, last: bool) -> tuple[int, bytes]:
        assert self.conn is not None
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.will_close and not last:
            self.close()
        return resp.status, data


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="labctl.lab.traffic", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="http://HOST[:PORT] of the server")
    p.add_argument("--requests", type=int, default=100, help="total requests (default 100)")
    p.add_argument("--mode", choices=MODES, default="keepalive")
    p.add_argument("--connections", type=int, default=1, help="concurrent connections")
    p.add_argument("--rate", type=float, default=None, help="total requests per second")
    p.add_argument("--post-sizes", default="", help="POST /echo body sizes, e.g. 0,1024,1m")
    p.add_argument("--get-paths", default="/", help="GET paths, comma separated ('' for none)")
    p.add_argument("--source", default="", help="client address(es) to bind, comma separated")
    p.add_argument("--timeout", type=float, default=10.0, help="socket timeout in seconds")
    p.add_argument("--seq-query", action="store_true", help="append ?seq=N to every URI")
    p.add_argument("--user-agent", default=USER_AGENT)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print only the JSON summary")
    return p.parse_args(argv)


def check_args(a: argparse.Namespace) -> None:
    """Validate and normalise parsed arguments; raise ValueError with a readable message."""
    parts = urlsplit(a.url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url: {a.url!r} is not http://HOST[:PORT]")
    a.host, a.port = parts.hostname, parts.port or 80
    if a.requests < 0 or a.connections < 1 or (a.rate is not None and a.rate <= 0):
        raise ValueError("--requests must be >= 0, --connections >= 1, --rate > 0")
    a.sources = [s.strip() for s in a.source.split(",") if s.strip()]
    for s in a.sources:
        ipaddress.IPv4Address(s)
    a.sizes = parse_sizes(a.post_sizes)
    a.paths = [p.strip() for p in a.get_paths.split(",") if p.strip()]
    for path in a.paths:
        if not path.startswith("/"):
            raise ValueError(f"--get-paths: {path!r} must start with '/'")


def current_lab_netns() -> str:
    """Name of the lab namespace (/run/netns/lc-*) this process is in, or ''."""
    try:
        me = os.stat("/proc/self/ns/net")
        names = os.listdir("/run/netns")
    except OSError:
        return ""
    for name in names:
        if not name.startswith("lc-"):
            continue
        try:
            st = os.stat(os.path.join("/run/netns", name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
            return name
    return ""


def route_dev(addr: str) -> str:
    """Output device for `addr` per `ip -o route get` (''=unknown or unroutable)."""
    try:
        out = subprocess.run(["ip", "-o", "route", "get", addr], capture_output=True,
                             text=True, timeout=5, check=False).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return ""
    return out[out.index("dev") + 1] if "dev" in out[:-1] else ""


def guard_destination(host: str) -> None:
    """Traffic rule, fail-closed: send only from inside a lab namespace, to loopback, or to an
    address that routes via a lab's own link (`lc-*`)."""
    try:
        addr = socket.gethostbyname(host)
    except OSError as exc:
        raise ValueError(f"--url: cannot resolve {host!r}: {exc}") from None
    if ipaddress.ip_address(addr).is_loopback or current_lab_netns():
        return
    if not route_dev(addr).startswith("lc-"):
        raise ValueError(f"refusing to send to {addr}: not loopback, not inside a lab "
                         "namespace, and not routed via a lab link; run me with "
                         "`ip netns exec lc-NAME-client ...`")


def run(a: argparse.Namespace) -> dict[str, Any]:
    plan = build_plan(a.paths, a.sizes)
    bodies = {s: b"x" * s for s in set(a.sizes)}
    disp = Dispatcher(a.requests, a.rate)
    workers = [Worker(a, plan, bodies, disp, a.sources[i % len(a.sources)] if a.sources else None,
                      a.seed + i) for i in range(a.connections)]
    started = time.time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - disp.start
    total = Tally()
    for w in workers:
        total.merge(w.tally)
    meta = {"url": a.url, "mode": a.mode, "connections": a.connections, "rate_target": a.rate,
            "requested": a.requests, "source": a.sources, "started_at": started,
            "finished_at": time.time(), "seq_query": a.seq_query}
    return summarize(total, plan, elapsed, meta)


def main(argv: Optional[list[str]] = None) -> int:
    try:
        a = parse_args(argv)
        check_args(a)
        guard_destination(a.host)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run(a)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['ok']}/{summary['attempted']} ok, {summary['errors']} errors, "
              f"{summary['elapsed']:.2f}s, {summary['rate']:.1f} req/s; "
              f"errors by kind: {summary['error_kinds'] or 'none'}")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
