"""A file written on a host in one round trip: the text on stdin to a temp name next to it
(mode 600), then `mv -f` over the file, so a reader sees the old file or the new one, never
half of one. One command, where an SFTP upload plus `mv` costs two round trips and an
`sftp-server` process on the host; argv only (the paths travel as positional parameters).

    res = write_text(transport, "/var/lib/labctl/lab/online/journal.json", text, sudo=True)
    unwrite_argv(argv)    # (tmp, path) when argv is such a write, else None (FakeTransport)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Optional

from labctl.transport.base import Result, Transport

SCRIPT = 'umask 077 && cat > "$1" && mv -f "$1" "$2"'


def write_argv(tmp: str, path: str) -> list[str]:
    return ["sh", "-c", SCRIPT, "sh", tmp, path]


def unwrite_argv(argv: Sequence[str]) -> Optional[tuple[str, str]]:
    """(tmp, path) when `argv` is a `write_argv`, else None (pure)."""
    if len(argv) == 6 and tuple(argv[:4]) == ("sh", "-c", SCRIPT, "sh"):
        return argv[4], argv[5]
    return None


def temp_path(path: str) -> str:
    """A fresh temp name next to `path` (same directory: the `mv` is a rename)."""
    return f"{path}.tmp-{uuid.uuid4().hex[:12]}"


def write_text(transport: Transport, path: str, text: str, sudo: bool = False) -> Result:
    """Write `text` to `path` atomically (see the module doc); a failure removes the temp file
    and is returned, not raised (call `.check()`)."""
    tmp = temp_path(path)
    res = transport.run(write_argv(tmp, path), sudo=sudo, stdin=text)
    if not res.ok:
        transport.run(["rm", "-f", tmp], sudo=sudo)
    return res
