"""The traffic generator's plan (pure): what each request is (method, path, body, Host,
chunked), the bodies themselves, and the parsing of --post-sizes and --request.
"""

from __future__ import annotations

MAX_BODY = 8 * 1024 * 1024
BODY_METHODS = ("POST", "PUT", "PATCH")
CHUNK = 1000                    # chunked bodies go out in chunks of this size
_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


class Item:
    """One planned request: method, URI (path, without the optional sequence query), body
    length, Host header ("" = the URL's host) and whether the body is sent chunked."""

    __slots__ = ("body_len", "chunked", "host", "method", "uri")

    def __init__(self, method: str, uri: str, body_len: int, host: str = "",
                 chunked: bool = False) -> None:
        self.method, self.uri, self.body_len = method, uri, body_len
        self.host, self.chunked = host, chunked

    @property
    def sends_body(self) -> bool:
        return self.body_len > 0 or self.chunked or self.method in BODY_METHODS

    def key(self) -> str:
        return f"{self.method} {self.uri} {self.body_len}" + (
            f" host={self.host}" if self.host else "") + (" chunked" if self.chunked else "")


def body_bytes(size: int, n: int) -> bytes:
    """The body of request number `n`: `b<n>-` then the alphabet repeated, `size` bytes."""
    head = f"b{n}-".encode()
    return (head + _ALPHABET * (size // len(_ALPHABET) + 1))[:size]


def parse_request(spec: str) -> Item:
    """`PUT /api/x 100 chunked host=a.example` -> Item; raises ValueError naming the spec."""
    words = spec.split()
    if len(words) < 2 or not words[0].isalpha() or not words[1].startswith("/"):
        raise ValueError(f"--request {spec!r}: expected METHOD /PATH [SIZE] [chunked] "
                         "[host=NAME]")
    size, host, chunked = 0, "", False
    for word in words[2:]:
        if word == "chunked":
            chunked = True
        elif word.startswith("host=") and len(word) > 5:
            host = word[5:]
        else:
            try:
                size = parse_sizes(word)[0] if word[0].isdigit() else -1
            except ValueError:
                size = -1
            if size < 0:
                raise ValueError(f"--request {spec!r}: {word!r} is not a size, chunked or "
                                 "host=NAME")
    return Item(words[0].upper(), words[1], size, host, chunked)


def with_hosts(plan: list[Item], hosts: list[str]) -> list[Item]:
    """Every item once per Host header, alternating hosts (items that name one keep it)."""
    if not hosts:
        return plan
    return [Item(i.method, i.uri, i.body_len, i.host or h, i.chunked)
            for i in plan for h in ([i.host] if i.host else hosts)]


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
