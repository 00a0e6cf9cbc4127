"""Inventory loading: YAML text -> a validated, frozen `Inventory` (schema: inventory.models).

Errors are `InventoryError` (exit code 2) and name `file:line`, the dotted field and what would be
valid. To get lines we compose the YAML into nodes ourselves (which also lets us reject duplicate
keys, which PyYAML's loader silently overwrites) and keep a map from field path to line.

Public API:
    load_inventory(path) -> Inventory
    parse_inventory(text, source="<string>") -> Inventory
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ValidationError

from labctl.errors import InventoryError
from labctl.inventory.models import (
    Clients,
    Conntrack,
    Engine,
    FieldProblem,
    Hosts,
    HostSpec,
    Intercept,
    Inventory,
    Logs,
    LogSpec,
    Role,
    Service,
    SSHOptions,
    Verify,
    pool_network,
)

__all__ = [
    "Clients",
    "Conntrack",
    "Engine",
    "HostSpec",
    "Hosts",
    "Intercept",
    "Inventory",
    "LogSpec",
    "Logs",
    "Role",
    "SSHOptions",
    "Service",
    "Verify",
    "load_inventory",
    "parse_inventory",
    "pool_network",
]

PathKey = tuple[Union[str, int], ...]
MAX_ERRORS = 8

#: What a valid value looks like, by pydantic error type (appended to its message).
_VALID_HINTS = {
    "ip_v4_address": "an IPv4 address like 192.168.44.130",
    "ip_v4_network": "a network with zero host bits like 62.135.200.0/24",
    "int_type": "a whole number without quotes",
    "int_parsing": "a whole number without quotes",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a YAML list, e.g. [a, b]",
    "model_type": "a mapping of keys to values",
    "missing": "this field is required",
    "literal_error": "",
}


class _Located:
    """YAML data plus a map from field path to the 1-based line that defines it."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[PathKey, int] = {}
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        if depth > 50:
            raise InventoryError(f"{self.source}:{_line(node)}: YAML nested too deeply")
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node)
                if not isinstance(key, str):
                    raise InventoryError(
                        f"{self.source}:{_line(key_node)}: {_dotted(path) or 'top level'}: "
                        f"key {key!r} is not a name", hint="keys are plain words like `address`"
                    )
                if key in out:
                    raise InventoryError(
                        f"{self.source}:{_line(key_node)}: {_dotted((*path, key))}: duplicate key "
                        f"(first at line {self.lines[(*path, key)]})", hint="remove one of them"
                    )
                self.lines[(*path, key)] = _line(key_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, (*path, i), depth + 1) for i, n in enumerate(node.value)]
        return self._constructor.construct_object(node)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_inventory(text: str, source: str = "<string>") -> Inventory:
    """Validate inventory YAML text; raises InventoryError naming `source:line` and the field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise InventoryError(
            f"{where}: not valid YAML: {problem}",
            hint="check indentation and quoting near that line",
        ) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise InventoryError(
            f"{source}:1: an inventory must be a YAML mapping (lab:, topology:, hosts:, ...)",
            hint="see inventories/staging.yaml for a documented example",
        )
    located = _Located(source)
    data = located.build(root, ())
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise _inventory_error(exc, located) from None


def load_inventory(path: Union[str, Path]) -> Inventory:
    """Read and validate an inventory file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"{p}: cannot read inventory: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{p}: not a text file (UTF-8 expected)") from None
    return parse_inventory(text, source=str(p))


def _inventory_error(exc: ValidationError, located: _Located) -> InventoryError:
    messages = []
    for err in exc.errors()[:MAX_ERRORS]:
        messages.append(_describe(err, located))
    more = len(exc.errors()) - MAX_ERRORS
    if more > 0:
        messages.append(f"... and {more} more")
    return InventoryError(
        "invalid inventory:\n  " + "\n  ".join(messages),
        hint="see inventories/staging.yaml for every field, with comments",
    )


def _describe(err: Any, located: _Located) -> str:
    loc: PathKey = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    problem = ctx.get("error")
    if isinstance(problem, FieldProblem):
        loc = problem.path
        msg = str(problem)
    else:
        msg = _message(err, loc)
    line = _nearest_line(loc, located.lines)
    field = _dotted(loc) or "top level"
    return f"{located.source}:{line}: {field}: {msg}"


def _message(err: Any, loc: PathKey) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        return "unknown key" + (f"; valid keys here: {', '.join(valid)}" if valid else "")
    msg = str(err["msg"])
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    if kind == "missing":
        return "required field is missing"
    hint = _VALID_HINTS.get(kind, "")
    got = err.get("input")
    shown = "" if kind == "missing" or isinstance(got, (dict, list)) else f" (got {got!r})"
    return msg + shown + (f"; expected {hint}" if hint else "")


def _nearest_line(loc: PathKey, lines: dict[PathKey, int]) -> int:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


def _valid_keys(path: PathKey) -> list[str]:
    """Field names of the model at `path` (walking the schema; list indexes are skipped)."""
    model: type[BaseModel] = Inventory
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        nested = _model_of(info.annotation) if info is not None else None
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _model_of(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
