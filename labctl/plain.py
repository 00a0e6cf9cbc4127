"""Result values as plain JSON, for every report, `--json` output and saved plan (pure):
dataclasses -> objects, enums -> values, addresses and paths -> strings, tuples -> lists,
mapping keys -> strings.

`dumps` is the one JSON spelling of every report (`indent=2`, keys sorted), the same as the
CLI's `--json` output of `up`/`status`/`down`.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
from pathlib import Path
from typing import Any


def plain(obj: Any) -> Any:
    """`obj` as JSON-able values; a dataclass field holding a callable is left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not callable(getattr(obj, f.name))}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (ipaddress.IPv4Address, ipaddress.IPv4Network, Path)):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(plain(obj), indent=2, sort_keys=True)
