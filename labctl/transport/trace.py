"""An opt-in trace of every SSH command, for finding where `up`/`down` spend their time:
with `LABCTL_TRACE=FILE` in the environment, each `run`/`put` appends one line to FILE:
seconds since the process started (start of the command), its duration, the thread, the
host and the command's first words. Off (one `os.environ` lookup) otherwise.

    with traced(host, argv):
        ...run the command...
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

ENV = "LABCTL_TRACE"
_T0 = time.monotonic()
_LOCK = threading.Lock()


def summary(argv: Sequence[str], width: int = 110) -> str:
    """The command's words, the batch / write script bodies left out (pure)."""
    words = [w if "\n" not in w and len(w) < 60 else "<script>" for w in argv]
    text = " ".join(words)
    return text if len(text) <= width else text[:width - 3] + "..."


@contextmanager
def traced(host: str, argv: Sequence[str]) -> Iterator[None]:
    path = os.environ.get(ENV)
    if not path:
        yield
        return
    start = time.monotonic()
    try:
        yield
    finally:
        end = time.monotonic()
        line = (f"{start - _T0:8.3f} {end - start:6.3f} {threading.current_thread().name[:14]:14} "
                f"{host:12} {summary(argv)}\n")
        with _LOCK, open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
