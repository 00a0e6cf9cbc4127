"""Hypothesis strategies shared by the HTTP framer and selection tests: random HTTP/1.x
requests (methods, paths, hosts, Content-Length and chunked bodies) and random segmentation."""

from __future__ import annotations

from typing import List, NamedTuple

from hypothesis import strategies as st

METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH")
PATHS = ("/", "/api", "/api/v1/users", "/static/app.js", "/static/", "/health?x=1", "/apix")
HOSTS = ("example.com", "api.example.com", "a.b.example.com", "other.org", "")


class Generated(NamedTuple):
    method: str
    path: str
    host: str
    body: str      # "none" | "length" | "chunked"
    wire: bytes


@st.composite
def requests(draw: st.DrawFn) -> Generated:
    method = draw(st.sampled_from(METHODS))
    path = draw(st.sampled_from(PATHS))
    host = draw(st.sampled_from(HOSTS))
    kind = draw(st.sampled_from(("none", "length", "chunked")))
    lead = b"\r\n" * draw(st.integers(0, 1))
    head = [f"{method} {path} HTTP/1.{draw(st.integers(0, 1))}"]
    if host:
        head.append(f"Host: {host}")
    if draw(st.booleans()):
        head.append("Expect: 100-continue")
    body = b""
    if kind == "length":
        payload = draw(st.binary(max_size=40))
        head.append(f"Content-Length: {len(payload)}")
        body = payload
    elif kind == "chunked":
        head.append("Transfer-Encoding: chunked")
        chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3))
        for chunk in chunks:
            ext = draw(st.sampled_from(("", ";a=1", ';name="v"')))
            body += f"{len(chunk):x}{ext}\r\n".encode() + chunk + b"\r\n"
        trailer = draw(st.sampled_from((b"", b"X-Sum: 1\r\n")))
        body += b"0\r\n" + trailer + b"\r\n"
    wire = lead + ("\r\n".join(head) + "\r\n\r\n").encode() + body
    return Generated(method, path, host, kind, wire)


@st.composite
def segmented(draw: st.DrawFn, data: bytes) -> List[bytes]:
    """``data`` cut at random points (empty segments included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]
