"""How labctl reaches hosts: one interface (`Transport`), an SSH implementation and a fake."""

from labctl.transport.base import CommandFailed, Result, Transport

__all__ = ["CommandFailed", "Result", "Transport"]
