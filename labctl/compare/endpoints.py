"""Endpoints (pure): `GET /users/123/orders?x=1` -> `GET /users/{id}/orders`.

A path segment that is a number, a UUID or a long hexadecimal id (8+ hex digits with at least
one digit: object ids, hashes) becomes `{id}`, also before an extension (`123.json` ->
`{id}.json`); the query and fragment are dropped; `%XX` escapes are decoded first.
"""

from __future__ import annotations

import re
from typing import Optional

from labctl.verify.logparse import endpoint as path_of

ID = "{id}"
_NUMBER = r"[+-]?\d+(?:\.\d+)?"
_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_HEX = r"(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}"
_SEGMENT = re.compile(rf"^(?:{_UUID}|{_HEX}|{_NUMBER})(\.[A-Za-z0-9]{{1,8}})?$")


def segment(text: str) -> str:
    """One path segment, with an id replaced by `{id}` (its extension kept)."""
    m = _SEGMENT.match(text)
    if m is None:
        return text
    return ID + (m.group(1) or "")


def normalise_path(uri: Optional[str]) -> str:
    """The path of `uri` with ids as `{id}` (no query, no fragment); `-` for no URI."""
    path = path_of(uri)
    if path == "-":
        return path
    return "/".join(segment(s) for s in path.split("/"))


def endpoint_of(method: Optional[str], uri: Optional[str]) -> str:
    """`GET /users/{id}`: the method and the normalised path."""
    return f"{method or '-'} {normalise_path(uri)}"
