"""The F1 rules' bookkeeping shared by the fuzz modules: the per-input time limit (``timed``,
``LIMIT_S``, ``SLOWEST``), the byte mutator (``mutate``, ``EDITS``), input chunking, and the
hypothesis settings every target runs under (``FUZZ``, ``FUZZ_EXAMPLES``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[3]
KEPT = ROOT / "tests" / "fixtures" / "fuzz"
LIMIT_S = 0.100
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
T = TypeVar("T")


SLOWEST: Dict[str, float] = {}       # target -> its slowest input, in s (printed at the end)


def timed(target: str, fn: Callable[..., T], *args: Any, tries: int = 1) -> T:
    """Run ``fn(*args)`` and assert it took under LIMIT_S, whether it returned or raised: its
    wall time, or its CPU time when the wall time includes a scheduler pause. A pure parser
    (``tries=3``) that was slow is timed again and its fastest run counts; a call that changes
    state (the default) runs once."""
    out: Any = None
    error: Optional[BaseException] = None
    for _attempt in range(tries):
        out, error = None, None
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            out = fn(*args)
        except Exception as exc:  # re-raised below, after the time check
            error = exc
        took = time.perf_counter() - t0
        if took >= LIMIT_S:
            took = time.thread_time() - c0
        if took < LIMIT_S:
            break
    SLOWEST[target] = max(SLOWEST.get(target, 0.0), took)
    assert took < LIMIT_S, f"{target}: one input took {took * 1000:.1f} ms (limit 100 ms)"
    if error is not None:
        raise error
    return out  # type: ignore[no-any-return]


def mutate(data: bytes, edits: List[Tuple[int, int, int]]) -> bytes:
    """Apply (op, position, value) edits: 0 flip a byte, 1 insert, 2 delete, 3 truncate."""
    buf = bytearray(data)
    for op, pos, value in edits:
        if not buf:
            buf.append(value)
            continue
        i = pos % len(buf)
        if op == 0:
            buf[i] ^= value or 1
        elif op == 1:
            buf.insert(i, value)
        elif op == 2:
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                 max_size=8)

CHUNKS = st.lists(st.integers(1, 80), max_size=6)


def chunked(data: bytes, sizes: List[int]) -> Iterator[bytes]:
    """``data`` cut at ``sizes`` (then the rest), as a stream parser receives it."""
    pos = 0
    for size in sizes:
        yield data[pos:pos + size]
        pos += size
    yield data[pos:]
