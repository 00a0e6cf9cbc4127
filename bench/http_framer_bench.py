"""Micro benchmark of the HTTP/1.x request framer and per-request selection (engine/http/).

    .venv/bin/python bench/http_framer_bench.py [--requests N] [--mss BYTES] [--repeat R]
                                                [--out bench/results/http_framer.json]

The framer alone, NOT wired into tcpcopy yet (issue 9 continues): one keep-alive client
stream of N requests (90 % small GETs to /api/… and /static/…, 7 % POSTs with a 300-byte
Content-Length body, 3 % chunked POSTs with an extension and a trailer) cut into segments of
``--mss`` bytes, fed to (a) ``RequestFramer`` and (b) ``SelectedStream`` with
``--allow-path /api --deny-header User-Agent:bot``. Prints requests/s and MB/s of CPU time
(``time.process_time``, best of ``--repeat``) and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.http.framer import RequestFramer  # noqa: E402
from engine.http.select import Selection  # noqa: E402
from engine.http.stream import SelectedStream  # noqa: E402

clock = time.process_time


def keepalive_stream(n: int) -> bytes:
    out = []
    for k in range(n):
        path = f"/api/v1/items/{k}" if k % 2 else f"/static/app.{k % 7}.js"
        head = (f"{{}} {path} HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: labctl-traffic\r\n"
                "Accept: */*\r\n")
        if k % 100 < 90:
            out.append((head.format("GET") + "\r\n").encode())
        elif k % 100 < 97:
            out.append((head.format("POST") + "Content-Length: 300\r\n\r\n").encode() + b"x" * 300)
        else:
            out.append((head.format("POST") + "Transfer-Encoding: chunked\r\n\r\n").encode()
                       + b"64;ext=1\r\n" + b"y" * 100 + b"\r\n0\r\nX-Sum: 1\r\n\r\n")
    return b"".join(out)


def best(repeat: int, run: Callable[[], int]) -> Dict[str, float]:
    times, result = [], 0
    for _ in range(repeat):
        t0 = clock()
        result = run()
        times.append(clock() - t0)
    return {"cpu_s": round(min(times), 4), "result": result}


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--mss", type=int, default=1448)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "http_framer.json"))
    a = p.parse_args(argv)
    stream = keepalive_stream(a.requests)
    segments = [stream[i:i + a.mss] for i in range(0, len(stream), a.mss)]

    def frame() -> int:
        framer = RequestFramer()
        done = 0
        for seg in segments:
            done += sum(1 for piece in framer.feed(seg) if piece.done)
        return done

    def select() -> int:
        selection = Selection.from_flags([("--allow-path", "/api"),
                                          ("--deny-header", "User-Agent:bot")])
        sel = SelectedStream(selection)
        offset = copied = 0
        for seg in segments:
            for chunk in sel.feed(offset, seg):
                copied += len(chunk.data)
            offset += len(seg)
        return selection.counters()["--allow-path /api"]["selected"]

    rows = {}
    for name, run in (("framer", frame), ("framer+selection", select)):
        r = best(a.repeat, run)
        rows[name] = {**r, "requests_per_s": round(a.requests / r["cpu_s"]),
                      "mb_per_s": round(len(stream) / r["cpu_s"] / 1e6, 1)}
        print(f"{name:18} {rows[name]['requests_per_s']:>9,} req/s  "
              f"{rows[name]['mb_per_s']:>6} MB/s  ({r['cpu_s']} s CPU, result {r['result']})")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    doc = {"bench": "http_framer", "commit": commit, "python": platform.python_version(),
           "requests": a.requests, "stream_bytes": len(stream), "segments": len(segments),
           "mss": a.mss, "repeat": a.repeat, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
