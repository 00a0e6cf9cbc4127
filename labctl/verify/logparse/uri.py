"""URIs as the ledger matches them: canonical form, and the endpoint (path) of a URI."""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import parse_qsl, quote, unquote

#: RFC 3986 unreserved characters: percent-encoding them is noise, so decode it.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")


def _decode_unreserved(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return _PCT.sub(repl, text)


def normalise_uri(uri: Optional[str], sort_query: bool = False) -> str:
    """A canonical form for matching: unreserved `%XX` decoded, other escapes upper-cased,
    a trailing `?` and any `#fragment` dropped, optionally query parameters sorted."""
    if not uri:
        return ""
    uri = uri.split("#", 1)[0]
    path, sep, query = uri.partition("?")
    path = _decode_unreserved(path) or "/"
    if not sep or not query:
        return path
    if sort_query:
        pairs = sorted(parse_qsl(query, keep_blank_values=True))
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    else:
        query = _decode_unreserved(query)
    return f"{path}?{query}"


def endpoint(uri: Optional[str]) -> str:
    """The path part of a URI (for per-endpoint figures), decoded."""
    if not uri:
        return "-"
    return unquote(uri.split("?", 1)[0].split("#", 1)[0]) or "/"
