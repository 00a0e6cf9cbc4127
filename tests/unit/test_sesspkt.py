"""sesspkt.syn_options: the fast path for Linux's SYN option layout agrees with the generic
parser on every input (well-formed, corrupted and random bytes)."""

from __future__ import annotations

import random
from typing import Optional, Tuple

from engine.packets import build_tcp_options, parse_tcp_options
from engine.session.packets import syn_options

SynOpts = Tuple[Optional[int], Optional[int], Optional[Tuple[int, int]]]


def generic(raw: bytes) -> SynOpts:
    try:
        opts = parse_tcp_options(raw)
    except ValueError:
        return None, None, None
    return opts.mss, opts.wscale, opts.timestamps


def test_linux_layout_is_read_exactly() -> None:
    raw = build_tcp_options(1460, 7, True, (0xDEADBEEF, 42))
    assert len(raw) == 20
    assert syn_options(raw) == (1460, 7, (0xDEADBEEF, 42))


def test_fast_path_agrees_with_generic_parser() -> None:
    rnd = random.Random(7)
    for _ in range(20000):
        raw = bytearray(build_tcp_options(rnd.randrange(65536), rnd.randrange(256), True,
                                          (rnd.getrandbits(32), rnd.getrandbits(32))))
        if rnd.random() < 0.5:
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
        assert syn_options(bytes(raw)) == generic(bytes(raw)), bytes(raw).hex()
    for _ in range(5000):
        junk = bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 4, 12, 20, 24))))
        assert syn_options(junk) == generic(junk), junk.hex()


def test_other_layouts_fall_back() -> None:
    raw = build_tcp_options(1400, None, False, (5, 6))     # MSS, NOP NOP TS
    assert syn_options(raw) == (1400, None, (5, 6))
    assert syn_options(b"") == (None, None, None)
    assert syn_options(b"\x02\x09") == (None, None, None)   # bad length: read as absent
