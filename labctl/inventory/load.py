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
    TargetRole,
    TargetSpec,
    Verify,
    pool_network,
)
from labctl.inventory.yamlsource import (
    VALID_HINTS,
    Located,
    PathKey,
    compose_mapping,
    dotted,
    nearest_line,
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
    "TargetRole",
    "TargetSpec",
    "Verify",
    "load_inventory",
    "parse_inventory",
    "pool_network",
]

MAX_ERRORS = 8

def parse_inventory(text: str, source: str = "<string>") -> Inventory:
    """Validate inventory YAML text; raises InventoryError naming `source:line` and the field."""
    root = compose_mapping(text, source, InventoryError)
    if root is None:
        raise InventoryError(
            f"{source}:1: an inventory must be a YAML mapping (lab:, topology:, hosts:, ...)",
            hint="see inventories/staging.yaml for a documented example",
        )
    located = Located(source)
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


def _inventory_error(exc: ValidationError, located: Located) -> InventoryError:
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


def _describe(err: Any, located: Located) -> str:
    loc: PathKey = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    problem = ctx.get("error")
    if isinstance(problem, FieldProblem):
        loc = problem.path
        msg = str(problem)
    else:
        msg = _message(err, loc)
    line = nearest_line(loc, located.lines)
    field = dotted(loc) or "top level"
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
    hint = VALID_HINTS.get(kind, "")
    got = err.get("input")
    shown = "" if kind == "missing" or isinstance(got, (dict, list)) else f" (got {got!r})"
    return msg + shown + (f"; expected {hint}" if hint else "")


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
