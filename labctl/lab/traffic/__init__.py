"""HTTP traffic generator for the lab (standard library only; run inside the client namespace).

    ip netns exec lc-NAME-client python -m labctl.lab.traffic --url http://10.77.N.10 \\
        --requests 1000 --mode keepalive|new|mixed [--connections C] [--rate R] \\
        [--post-sizes 0,1024,1048576] [--source 10.78.N.11] [--json] \\
        [--host-header a.example,b.example] [--request 'PUT /api/x 100 chunked host=a.example']

Requests cycle deterministically through the plan: `GET <path>` for each --get-paths entry, then
`POST /echo` with each --post-sizes body; or, with --request (repeatable), exactly those
requests in that order: `METHOD PATH [SIZE] [chunked] [host=NAME]` (a body of SIZE bytes,
sent with Content-Length, or chunked; POST/PUT/PATCH always send one). --host-header sends
every planned request once per name given, alternating (Host: NAME; default: the URL's).
Bodies are `body_bytes(size, n)` for request number n (printable, JSON-safe), so a test can
compare them byte for byte; an answer from /echo or /api/ must be the body's length.

The summary is the truth of what was sent: attempted, sent (request fully written), ok (2xx
with a correct /echo or /api/ answer), errors, and per (method, uri, body_len, host, chunked)
counts, and `latency_ms` (p50/p99/p99.9/max of the ok requests, from the moment a worker
takes a request after pacing until its whole answer is read; includes the connect of a new
connection). Exit status: 0 all ok, 1 some requests failed, 2 bad usage. The pure plan (requests,
bodies) is `labctl.lab.traffic.plan`; `python -m labctl.lab.traffic` runs `main`.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
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

from labctl.lab.traffic.plan import (
    BODY_METHODS,
    CHUNK,
    MAX_BODY,
    Item,
    body_bytes,
    build_plan,
    parse_request,
    parse_sizes,
    with_hosts,
)

__all__ = ["BODY_METHODS", "CHUNK", "MAX_BODY", "Dispatcher", "Item", "Tally", "Worker",
           "body_bytes", "build_plan", "check_args", "guard_destination", "main", "parse_args",
           "parse_request", "parse_sizes", "run", "summarize", "with_hosts"]

MODES = ("keepalive", "new", "mixed")
MIXED_MAX_BURST = 20
USER_AGENT = "labctl-traffic/1"


class Tally:
    """Counts of one worker; merged at the end (no shared mutable state on the hot path)."""

    def __init__(self) -> None:
        self.attempted: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.error_kinds: Counter[str] = Counter()
        self.connections = 0
        self.latencies: list[float] = []

    def merge(self, other: Tally) -> None:
        for name in ("attempted", "sent", "ok", "status", "error_kinds"):
            getattr(self, name).update(getattr(other, name))
        self.connections += other.connections
        self.latencies.extend(other.latencies)


def percentiles(values: list[float]) -> dict[str, Optional[float]]:
    """p50/p99/p99.9/max of `values` in milliseconds (nearest rank; None when empty)."""
    ordered = sorted(values)
    out: dict[str, Optional[float]] = {}
    for name, q in (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)):
        if not ordered:
            out[name] = None
            continue
        rank = max(1, math.ceil(round(len(ordered) * q, 6)))
        out[name] = round(ordered[rank - 1] * 1000, 3)
    return out


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
                "host": item.host, "chunked": item.chunked,
                "attempted": tally.attempted[k], "sent": tally.sent[k], "ok": tally.ok[k],
                "errors": tally.attempted[k] - tally.ok[k],
            })
    return {
        **meta, "attempted": attempted, "sent": sum(tally.sent.values()), "ok": ok,
        "errors": attempted - ok, "error_kinds": dict(tally.error_kinds),
        "status": dict(tally.status), "connections_opened": tally.connections,
        "by_request": by_request, "elapsed": round(elapsed, 6),
        "rate": round(ok / elapsed, 3) if elapsed > 0 else 0.0,
        "latency_ms": percentiles(tally.latencies),
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

    def __init__(self, args: argparse.Namespace, plan: list[Item], disp: Dispatcher,
                 source: Optional[str], seed: int) -> None:
        super().__init__(daemon=True)
        self.args, self.plan, self.disp = args, plan, disp
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
        t0 = time.perf_counter()
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
        elif item.sends_body and (item.uri == "/echo" or item.uri.startswith("/api/")) and \
                body.strip() != str(item.body_len).encode():
            self.tally.error_kinds["echo_mismatch"] += 1
        else:
            self.tally.ok[key] += 1
            self.tally.latencies.append(time.perf_counter() - t0)

    def send(self, item: Item, n: int, last: bool) -> None:
        assert self.conn is not None
        uri = f"{item.uri}?seq={n}" if self.args.seq_query else item.uri
        headers = {"User-Agent": self.args.user_agent}
        if item.host:
            headers["Host"] = item.host
        if last:
            headers["Connection"] = "close"
        if not item.sends_body:
            self.conn.request(item.method, uri, headers=headers)
            return
        headers["Content-Type"] = "application/octet-stream"
        data = body_bytes(item.body_len, n)
        if item.chunked:        # http.client frames an iterable body as chunks
            chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
            self.conn.request(item.method, uri, body=iter(chunks), headers=headers,
                              encode_chunked=True)
            return
        self.conn.request(item.method, uri, body=data, headers=headers)

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
    p.add_argument("--request", action="append", default=[], metavar="SPEC",
                   help="METHOD /PATH [SIZE] [chunked] [host=NAME] (repeatable; replaces "
                        "--get-paths and --post-sizes)")
    p.add_argument("--host-header", default="", help="Host header(s), comma separated: every "
                   "request is sent once per name, alternating")
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
    a.items = [parse_request(spec) for spec in a.request]
    a.hosts = [h.strip() for h in a.host_header.split(",") if h.strip()]


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
    plan = with_hosts(a.items or build_plan(a.paths, a.sizes), a.hosts)
    disp = Dispatcher(a.requests, a.rate)
    workers = [Worker(a, plan, disp, a.sources[i % len(a.sources)] if a.sources else None,
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
