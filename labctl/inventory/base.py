"""What every inventory model shares: the frozen, unknown-key-refusing base model, and the
error a cross-field check raises naming its field (the loader maps it to a file line)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FieldProblem(ValueError):
    """A cross-field error that knows which field it is about (the loader maps it to a line)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
