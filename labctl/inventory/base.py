"""What every inventory model shares: the frozen, unknown-key-refusing base model, the error a
cross-field check raises naming its field (the loader maps it to a file line), and the check
of a path given for a remote host."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict


class FieldProblem(ValueError):
    """A cross-field error that knows which field it is about (the loader maps it to a line)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def absolute_path(value: Optional[str]) -> Optional[str]:
    """Log paths are absolute: a relative one depends on the remote working directory, and one
    starting with `-` would be read as an option by the commands that get it."""
    if value is not None and not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path (start it with /)")
    return value
