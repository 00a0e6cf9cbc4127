"""LocalTransport: run argv on this machine (the operator's own facts), optionally with a
prefix such as `ip netns exec NS` (tests and the local lab)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional, Sequence

from labctl.errors import RemoteError
from labctl.transport.base import TIMEOUT_EXIT, Result


class LocalTransport:
    def __init__(self, host: str = "local", prefix: Sequence[str] = ()):
        self.host = host
        self.prefix = tuple(prefix)

    def connect(self) -> None:
        """Nothing to open."""

    def wants_sudo(self, sudo: bool) -> bool:
        """Never: the operator's own commands and the lab's namespaces run as labctl's user."""
        return False

    def run(self, argv: Sequence[str], *, sudo: bool = True, timeout: Optional[float] = None,
            stdin: Optional[str] = None) -> Result:
        full = [*self.prefix, *argv]
        try:
            proc = subprocess.run(
                full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else ""
            return Result(self.host, tuple(argv), TIMEOUT_EXIT, out,
                          f"labctl: timed out after {timeout:g}s")
        except FileNotFoundError:
            return Result(self.host, tuple(argv), 127, "", f"{full[0]}: command not found")
        except OSError as exc:
            raise RemoteError(f"cannot run {full[0]}: {exc}", host=self.host) from None
        return Result(self.host, tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def put(self, local_path: str, remote_path: str, mode: int = 0o644) -> None:
        shutil.copyfile(local_path, remote_path)
        os.chmod(remote_path, mode)

    def get(self, remote_path: str, local_path: str) -> None:
        shutil.copyfile(remote_path, local_path)

    def close(self) -> None:
        """Nothing to close."""
