"""PyPy's garbage collector settings the daemons give themselves (RELIABILITY.md P2).

PyPy 7.3 sizes its nursery (the young generation) at half the "cache size" that
``/proc/cpuinfo`` reports, and does no major collection while its heap is below 8 times the
nursery (``PYPY_GC_MIN``'s default). Where that line names a big last-level cache (this lab's
VM: ``cache size: 307200 KB``) the nursery is 150 MB and old objects are not collected below
1.2 GB: tcpcopy at 1,000 req/s (~95 new sessions/s) grew ~13 MB/min for as long as it was
watched (253 -> 369 MB in 10 minutes), all of it garbage that a ``gc.collect()`` frees
(``bench/session_soak.py``), and its ``-m`` (512 MB in the lab) would have started shedding
sessions after ~20 minutes. With a 4 MB nursery the same traffic levels off at ~105 MB within
a minute and costs no more CPU (fewer cache misses; ``docs/engine.md``).

The nursery is fixed when the interpreter starts. labctl starts its daemons with ``GC_ENV``
already in their environment (``detach --env``, ``systemd-run --setenv``); a daemon started
without it (by hand) sets it and replaces itself (``exec``: same pid, same argv) by a fresh
interpreter that reads it. Nothing happens under CPython, nor when the environment already
has every variable of ``GC_ENV`` (an operator's own ``PYPY_GC_NURSERY`` is kept as given), nor
when the command cannot be run again as it was (``-c``, an interactive session).

- ``reexec_argv(executable, argv, environ, is_pypy)`` (pure): the argv to exec, or None.
- ``ensure_gc_settings()``: the daemons' first step (``engine.__main__``).
- ``gc_banner()``: the start-up line naming the nursery (None under CPython).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import PurePath
from typing import List, Mapping, Optional, Sequence

#: The settings (PyPy's own variables); 4 MB is also PyPy's default when it finds no cache size.
GC_ENV = {"PYPY_GC_NURSERY": "4MB"}

__all__ = ["GC_ENV", "ensure_gc_settings", "gc_banner", "reexec_argv"]


def reexec_argv(executable: str, argv: Sequence[str], environ: Mapping[str, str],
                is_pypy: bool) -> Optional[List[str]]:
    """The command line that runs this process again under ``GC_ENV``, or None when there is
    nothing to do (CPython, settings already there) or no way to (no interpreter path, ``-c``).

    ``argv`` is ``sys.argv``: the zipapp's path first (``pypy3 engine.pyz tcpcopy ...``) or,
    under ``-m engine``, the path of ``engine/__main__.py`` (run again as ``-m engine``)."""
    if not is_pypy or not executable or not argv or all(k in environ for k in GC_ENV):
        return None
    first = argv[0]
    if first in ("", "-c", "-"):
        return None
    path = PurePath(first)
    if path.name == "__main__.py" and path.parent.name == "engine":
        return [executable, "-m", "engine", *argv[1:]]
    return [executable, *argv]


def ensure_gc_settings() -> None:
    """Under PyPy without ``GC_ENV`` in the environment: set it and exec the same command
    again (does not return then). Any failure to exec leaves the process running as it is."""
    is_pypy = sys.implementation.name == "pypy"
    argv = reexec_argv(sys.executable, sys.argv, os.environ, is_pypy)
    if argv is None:
        return
    for key, value in GC_ENV.items():
        os.environ.setdefault(key, value)
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):   # then only children get them; the daemon runs on
        os.execv(argv[0], argv)


def gc_banner() -> Optional[str]:
    """``PyPy GC: nursery 4.0 MB (PYPY_GC_NURSERY=4MB)``, or None under CPython."""
    if sys.implementation.name != "pypy":
        return None
    stats = gc.get_stats()     # PyPy's gc only
    nursery = str(getattr(stats, "nursery_size", "?"))
    given = ", ".join(f"{k}={os.environ[k]}" for k in sorted(GC_ENV) if k in os.environ)
    return f"PyPy GC: nursery {nursery}" + (f" ({given})" if given else "")
