"""Deterministic synthetic access logs for `labctl compare` tests (no machine paths).

`synth(seed, ...)` writes what nginx would log on online, baseline, candidate (and optionally a
second baseline) for the same stream of requests, in the lab's `labctl` log format, as text;
`records(text)` parses it back with the real log parser. Every side answers like the same
version unless `changes` say otherwise for an endpoint on the candidate:

- `/api/items/<n>` GET, `/api/users/<uuid>` GET, `/api/orders/<n>/lines` GET, `/api/search?q=`
  GET, `/api/cart` POST, `/api/clock` GET (a body whose size varies on every side: noise);
- latency: a per-request cost shared by every side times a per-side jitter;
- about 1 % of requests answer 404 on every side (missing items), 0.5 % 503 at random on each
  side independently (noise in the error share).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from labctl.verify.logparse import LogFormat, LogRecord, parse_text

T0 = 1_800_000_000.0
FMT = LogFormat("labctl")
CLIENT_POOL = "10.79.1.0/24"
ENDPOINTS = {  # name -> (method, median latency ms, body bytes)
    "items": ("GET", 30.0, 800),
    "users": ("GET", 45.0, 1200),
    "lines": ("GET", 60.0, 2400),
    "search": ("GET", 80.0, 5000),
    "cart": ("POST", 50.0, 300),
    "clock": ("GET", 5.0, 60),
}
#: The endpoint names as `labctl compare` groups them.
KEYS = {
    "items": "GET /api/items/{id}", "users": "GET /api/users/{id}",
    "lines": "GET /api/orders/{id}/lines", "search": "GET /api/search",
    "cart": "POST /api/cart", "clock": "GET /api/clock",
}


@dataclass(frozen=True)
class Change:
    """How the candidate answers one endpoint differently."""

    error_share: float = 0.0      # this share of its requests answer 500
    slower_ms: float = 0.0        # every request takes this much longer
    size_delta: int = 0           # every body is this much larger


@dataclass
class Logs:
    online: str = ""
    baseline: str = ""
    candidate: str = ""
    baseline2: str = ""
    sides: dict[str, list[str]] = field(default_factory=dict)


def _uri(rng: random.Random, name: str) -> str:
    n = rng.randint(1, 5000)
    user = uuid.UUID(int=rng.getrandbits(128))
    return {"items": f"/api/items/{n}", "users": f"/api/users/{user}",
            "lines": f"/api/orders/{n}/lines?page={rng.randint(1, 3)}",
            "search": f"/api/search?q=w{n}", "cart": "/api/cart", "clock": "/api/clock"}[name]


def _line(addr: str, t: float, method: str, uri: str, status: int, size: int, body: int,
          seconds: float, conn: int) -> str:
    when = datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")
    return (f'{addr} [{when}] "{method} {uri} HTTP/1.1" {status} {size} {120 + body} '
            f'"{body if body else "-"}" {seconds:.3f} {conn} 1 "synth/1.0" "shop.example"')


def synth(seed: int, requests: int = 2400, changes: dict[str, Change] | None = None,
          baseline2: bool = False, online: dict[str, Change] | None = None) -> Logs:
    """The logs of every side for `requests` requests (see the module docstring); `online`
    changes the online server's answers (an environment unlike the lab's)."""
    rng = random.Random(seed)
    changes = changes or {}
    on_changes = online or {}
    sides = ["online", "baseline", "candidate"] + (["baseline2"] if baseline2 else [])
    out: dict[str, list[str]] = {s: [] for s in sides}
    names = list(ENDPOINTS)
    for i in range(requests):
        name = rng.choice(names)
        method, median_ms, size = ENDPOINTS[name]
        uri = _uri(rng, name)
        body = 200 if method == "POST" else 0
        t = T0 + i * 0.02
        cost = median_ms * rng.lognormvariate(0.0, 0.35)
        missing = rng.random() < 0.01
        for side in sides:
            change = changes.get(name, Change()) if side == "candidate" else \
                on_changes.get(name, Change()) if side == "online" else Change()
            ms = max(0.5, cost * rng.lognormvariate(0.0, 0.08) + change.slower_ms)
            status = 404 if missing else 200
            if rng.random() < 0.005:
                status = 503
            if rng.random() < change.error_share:
                status = 500
            bytes_out = size + change.size_delta if status == 200 else 150
            if name == "clock" and status == 200:
                bytes_out += rng.randint(0, 3)
            addr = "198.51.100.7" if side == "online" else f"10.79.1.{1 + i % 200}"
            delay = 0.0 if side == "online" else 0.004 + rng.random() * 0.01
            out[side].append(_line(addr, t + delay, method, uri, status, bytes_out, body,
                                   ms / 1000.0, i // 4 + 1))
    text = {s: "".join(line + "\n" for line in lines) for s, lines in out.items()}
    return Logs(text["online"], text["baseline"], text["candidate"], text.get("baseline2", ""),
                out)


def records(text: str) -> list[LogRecord]:
    """Parse synthetic log text with the real parser (every line must parse)."""
    result = parse_text(text, FMT, "synth")
    assert result.malformed == 0, result.samples
    return result.records
