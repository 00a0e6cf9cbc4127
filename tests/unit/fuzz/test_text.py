"""F1 fuzzing of the text parsers: the HTTP request framer, access-log lines (named and custom
formats), and the inventory and runbook loaders (see ``tests/unit/fuzz/__init__.py`` for the
rules)."""

from __future__ import annotations

import contextlib
import re
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http.framer import RequestFramer
from labctl.drill.runbook.parse import parse_runbook
from labctl.drill.runbook.steps import RunbookError
from labctl.errors import InventoryError
from labctl.inventory.load import load_inventory, parse_inventory
from labctl.verify.logparse import NAMED_FORMATS, LogFormat
from tests.unit.fuzz.shared import CHUNKS, EDITS, EXAMPLES, FUZZ, ROOT, chunked, mutate, timed

# ------------------------------------------------------------------ HTTP request framer

HTTP_SEEDS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
    b"CONNECT a:443 HTTP/1.1\r\n\r\n",
]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(HTTP_SEEDS), st.binary(max_size=100)), max_size=5),
       EDITS, CHUNKS, st.sampled_from([64, 256, 16384]))
def test_http_framer_frames_every_byte_once(parts: List[bytes], edits: List[Tuple[int, int, int]],
                                           sizes: List[int], max_head: int) -> None:
    data = mutate(b"".join(parts), edits) if parts else b""
    fr = RequestFramer(max_head=max_head)
    pieces = []
    for chunk in chunked(data, sizes):
        pieces += timed("http", fr.feed, chunk)
        assert fr.pending <= max_head + 64
    pieces += timed("http", fr.abandon, "fuzz end")
    assert b"".join(p.data for p in pieces) == data
    pos = 0
    for p in pieces:
        assert p.start == pos
        pos += len(p.data)


# ------------------------------------------------------------------ access-log lines

LOG_SEEDS = [
    '10.0.0.1 - - [06/Dec/2026:03:59:00 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" "curl/8"',
    '10.0.0.1 [2026-12-06T03:59:00+00:00] "GET /a HTTP/1.1" 200 12 80 "-" 0.001 5 1 "ua" "h"',
]


@FUZZ
@given(st.sampled_from(sorted(NAMED_FORMATS)),
       st.one_of(st.sampled_from(LOG_SEEDS), st.text(max_size=300)),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400), st.integers(0, 126)),
                max_size=6))
def test_log_line_parser_raises_only_value_error(fmt: str, seed: str,
                                                 edits: List[Tuple[int, int, int]]) -> None:
    line = mutate(seed.encode(), edits).decode("utf-8", "replace")
    parser = LogFormat(fmt)
    with contextlib.suppress(ValueError):
        timed("logline", parser.parse_line, line, tries=3)


@FUZZ
@given(st.text(alphabet="$ab{}1_ \"[]-:", max_size=30),
       st.text(alphabet="ab1 \"[]-:.", max_size=60))
def test_custom_log_formats_raise_only_value_error(fmt: str, line: str) -> None:
    try:
        parser = timed("logline", LogFormat, fmt, tries=3)
    except ValueError:
        return
    with contextlib.suppress(ValueError):
        timed("logline", parser.parse_line, line, tries=3)


# ------------------------------------------------------------------ inventories and runbooks

INV_SEEDS = [p.read_text() for p in sorted((ROOT / "inventories").glob("*.yaml"))]
RUNBOOK_SEEDS = [p.read_text() for p in sorted((ROOT / "runbooks").glob("*.yaml"))]
YAML_SNIPPETS = st.sampled_from([
    "\n", ": ", "- ", "&a [1]\n", "*a", "{", "[", "!!python/object:os.system ls\n", "? x\n",
    "\t", "'", '"', "\\", "0x1F", "1e999", "~", "%TAG ! x\n", "---\n", "...\n", "<<: *a\n",
    "a: &a [*a]\n", "hosts: {x: 1}\n", "name: $(reboot)\n", "\u0000", "\ufeff", "  ", "#",
])


#: Whole-document refusals: no one line is at fault (compose_mapping).
WHOLE_FILE = ("nested too deeply", "aliases expand to more than")


def names_the_line(message: str) -> bool:
    """F4: a refusal names file:line (and the field), or is a whole-document one."""
    return bool(re.search(r"fuzz\.yaml:\d+", message)) or any(w in message for w in WHOLE_FILE)


@st.composite
def mutated_yaml(draw: st.DrawFn, seeds: List[str]) -> str:
    if draw(st.integers(0, 6)) == 0:
        return draw(st.text(max_size=200))
    lines = draw(st.sampled_from(seeds)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == 0 and lines:
            del lines[i]
        elif op == 1:
            lines.insert(i, draw(YAML_SNIPPETS))
        elif op == 2 and lines:
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(YAML_SNIPPETS) + line[j:]
        elif lines:
            lines[i], lines[-1] = lines[-1], lines[i]
    return "".join(lines)


@FUZZ
@given(mutated_yaml(INV_SEEDS))
def test_inventory_loader_raises_only_inventory_error(text: str) -> None:
    try:
        timed("inventory", parse_inventory, text, "fuzz.yaml", tries=3)
    except InventoryError as exc:
        assert names_the_line(exc.message), exc.message


@FUZZ
@given(mutated_yaml(RUNBOOK_SEEDS))
def test_runbook_loader_raises_only_runbook_error(text: str) -> None:
    try:
        timed("runbook", parse_runbook, text, "fuzz.yaml", tries=3)
    except RunbookError as exc:
        assert names_the_line(exc.message), exc.message


@settings(max_examples=min(EXAMPLES, 50), deadline=None, database=None)
@given(st.binary(max_size=200), st.sampled_from(INV_SEEDS))
def test_inventory_file_bytes_raise_only_inventory_error(tmp_path_factory: pytest.TempPathFactory,
                                                        junk: bytes, seed: str) -> None:
    path = tmp_path_factory.mktemp("inv") / "inv.yaml"
    path.write_bytes(seed.encode()[:200] + junk)
    with contextlib.suppress(InventoryError):
        timed("inventory", load_inventory, path, tries=3)

