"""Runbook YAML -> a validated `Runbook`: steps written as bare words or one-key mappings are
normalised, pydantic errors become one `RunbookError` naming file:line and the field."""


from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from pydantic import (
    ValidationError,
)

from labctl.drill.runbook.steps import (
    INVENTORY_SHAPE,
    MAX_ERRORS,
    PATTERN_HINTS,
    STEP_KINDS,
    FieldProblem,
    Runbook,
    RunbookError,
)
from labctl.errors import InventoryError
from labctl.inventory.yamlsource import (
    VALID_HINTS,
    Located,
    PathKey,
    compose_mapping,
    dotted,
    nearest_line,
)

# ---------------------------------------------------------------- loading


def _normalise_steps(data: Any, located: Located) -> Any:
    """`- up` -> {step: up}; `- wait: 2` -> {step: wait, seconds: 2}; `- fault: drop` ->
    {step: fault, kind: drop}; `- traffic: {...}` -> {step: traffic, ...}."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return data
    out = []
    for i, item in enumerate(data["steps"]):
        line = located.lines.get(("steps", i), 1)
        where = f"{located.source}:{line}: steps[{i}]"
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, dict) or len(item) != 1:
            raise RunbookError(f"{where}: a step is one of {', '.join(STEP_KINDS)}, written "
                               "`- up` or `- traffic: {requests: 100}` (one key per step)")
        (kind, params), = item.items()
        if kind not in STEP_KINDS:
            raise RunbookError(f"{where}: unknown step {kind!r}; steps: {', '.join(STEP_KINDS)}")
        if params is None:
            params = {}
        elif kind == "wait" and isinstance(params, (int, float)) and not isinstance(params, bool):
            params = {"seconds": params}
        elif kind == "fault" and isinstance(params, str):
            params = {"kind": params}
        if not isinstance(params, dict):
            raise RunbookError(f"{where}.{kind}: expected a mapping of parameters "
                               f"(got {params!r})")
        if "step" in params:
            raise RunbookError(f"{where}.{kind}.step: unknown key")
        out.append({"step": kind, **params})
    return {**data, "steps": out}


def parse_runbook(text: str, source: str = "<string>") -> Runbook:
    """Validate runbook YAML text; raises RunbookError naming `source:line` and the field."""
    root = compose_mapping(text, source, RunbookError)
    if root is None:
        raise RunbookError(f"{source}:1: a runbook must be a YAML mapping (name:, inventory:, "
                           "steps:)", hint="see runbooks/smoke.yaml")
    located = Located(source)
    try:
        data = located.build(root, ())
    except InventoryError as exc:
        raise RunbookError(exc.message, hint=exc.hint) from None
    data = _normalise_steps(data, located)
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        raise _runbook_error(exc, located, data.get("inventory")) from None


def load_runbook(path: Union[str, Path]) -> Runbook:
    """Read and validate a runbook file."""
    return parse_runbook(read_text(path), source=str(path))


def read_text(path: Union[str, Path]) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunbookError(f"{p}: cannot read runbook: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RunbookError(f"{p}: not a text file (UTF-8 expected)") from None


def _runbook_error(exc: ValidationError, located: Located, inventory: Any) -> RunbookError:
    errors = _relevant(exc.errors(), inventory)
    messages = [_describe(err, located) for err in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        messages.append(f"... and {len(errors) - MAX_ERRORS} more")
    return RunbookError("invalid runbook:\n  " + "\n  ".join(messages),
                        hint="see runbooks/smoke.yaml and runbooks/intercept-outage.yaml")


def _relevant(errors: list[Any], inventory: Any) -> list[Any]:
    """`inventory` is a path or {lab: ...}: report the branch the user evidently meant."""
    out = []
    wanted = "InventoryRef" if isinstance(inventory, dict) else "str"
    for err in errors:
        loc = tuple(err["loc"])
        if loc[:1] == ("inventory",) and len(loc) > 1:
            if loc[1] != wanted:
                continue
            err = {**err, "loc": (loc[0], *loc[2:])}
            if len(loc) == 2:
                err["msg"] = INVENTORY_SHAPE
                err["type"] = "value_error"
        out.append(err)
    return out


def _describe(err: Any, located: Located) -> str:
    loc: PathKey = tuple(err["loc"])
    problem = (err.get("ctx") or {}).get("error")
    if isinstance(problem, FieldProblem):
        loc, msg = problem.path, str(problem)
    else:
        msg = _message(err)
    line = nearest_line(loc, located.lines)
    return f"{located.source}:{line}: {dotted(loc) or 'top level'}: {msg}"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or kind == "value_error" else f" (got {got!r})"
    hint = VALID_HINTS.get(kind, "")
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get((err.get("ctx") or {}).get("pattern", ""), "")
    return msg + shown + (f"; expected {hint}" if hint else "")
