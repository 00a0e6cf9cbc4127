"""engine.stats: log-line format and atomic stats file."""

from __future__ import annotations

import json
import os
import re
import time

from engine.stats import Logger, format_log_line, stats_document, write_stats


def test_log_line_format() -> None:
    now = time.mktime((2024, 3, 5, 7, 8, 9, 0, 0, -1)) + 0.0456
    assert format_log_line("info", "hello", now) == "2024/03/05 07:08:09 +045 [info] hello"


def test_logger_writes_levels_and_errno(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "x.log")
    log = Logger(path, min_level="info", clock=lambda: 0.0)
    log.info("a")
    log.debug("hidden")
    log.error("raw fd", errno=90)
    log.close()
    with open(path) as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 2 and re.match(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \+\d{3} \[info\] a$",
                                        lines[0])
    assert lines[1].endswith("[error] raw fd (Message too long)")


def test_write_stats_atomic(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "s.json")
    doc = stats_document("intercept", "0.1", 1, 1.0, 2.0, "running", {"captured": 3},
                         listen="0.0.0.0:36524", clients=0)
    write_stats(path, doc)
    with open(path) as fh:
        assert json.load(fh) == doc
    assert os.listdir(str(tmp_path)) == ["s.json"]
