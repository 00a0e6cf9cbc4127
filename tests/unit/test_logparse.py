"""Log parsing on lines recorded from a real nginx (tests/fixtures/logs/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.verify import logparse as lp

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _parse(name: str, fmt: str) -> lp.ParseResult:
    return lp.parse_text((LOGS / name).read_text(), lp.LogFormat(fmt), name)


def test_labctl_format_all_fields() -> None:
    res = _parse("labctl.log", "labctl")
    assert res.malformed == 0 and len(res.records) == 13
    post = res.records[3]
    assert post.method == "POST" and post.uri == "/echo"
    assert post.status == 200 and post.body_bytes_sent == 3
    assert post.request_length == 12969 and post.content_length == 12813
    assert post.request_time == 0.0 and post.connection == 4
    assert post.time == lp.parse_time_iso("2026-11-27T07:32:25+00:00") == 1795764745.0
    assert post.remote_addr == "127.0.0.1"
    get = res.records[0]
    assert get.content_length is None  # "-" in the log
    assert res.records[-1].connection_requests == 2


def test_combined_format() -> None:
    res = _parse("combined.log", "combined")
    assert res.malformed == 0 and len(res.records) == 13
    r = res.records[8]
    assert (r.method, r.uri, r.status, r.body_bytes_sent) == ("GET", "/err", 503, 197)
    assert r.time == 1795764745.0
    assert r.request_time is None and r.content_length is None and r.request_length is None


def test_custom_log_format_from_inventory() -> None:
    fmt = (LOGS / "custom.format").read_text().strip()
    res = _parse("custom.log", fmt)
    assert res.malformed == 0 and len(res.records) == 13
    r = res.records[3]
    assert r.method == "POST" and r.uri == "/echo" and r.status == 200
    assert r.time == pytest.approx(1795764745.247)
    assert r.remote_addr == "127.0.0.1" and r.request_time == 0.0
    assert r.body_bytes_sent is None  # the format logs $bytes_sent, not $body_bytes_sent


def test_malformed_lines_are_counted_not_fatal() -> None:
    res = _parse("malformed.log", "labctl")
    # 3 good + "- - -" 400 + 2 good; bad: garbage, XXX status, month 13, truncated line
    assert len(res.records) == 6
    assert res.malformed == 4
    assert [m.line_no for m in res.samples] == [4, 5, 6, 9]
    assert res.samples[0].source == "malformed.log"
    bad_request = res.records[3]
    assert bad_request.status == 400 and bad_request.method is None and bad_request.uri is None


def test_incomplete_last_line_is_left_for_next_read() -> None:
    text = (LOGS / "labctl.log").read_text()
    cut = text[: len(text) - 20]
    res = lp.parse_text(cut, lp.LogFormat("labctl"))
    assert len(res.records) == 12 and res.malformed == 0
    assert lp.complete_prefix(cut.encode()).endswith(b"\n")


def test_unknown_variables_and_braces() -> None:
    fmt = lp.LogFormat('${remote_addr}|$msec|$foo|"$request"|$status|$bar')
    r = fmt.parse_line('10.0.0.9|1700000000.5|x-y|"GET /a?b HTTP/1.1"|201|tail with spaces')
    assert (r.remote_addr, r.time, r.uri, r.status) == ("10.0.0.9", 1700000000.5, "/a?b", 201)


def test_format_without_variables_is_rejected() -> None:
    with pytest.raises(lp.LogFormatError):
        lp.LogFormat("just text")


def test_time_local_with_offset() -> None:
    assert lp.parse_time_local("10/Oct/2000:13:55:36 -0700") == 971211336.0


@pytest.mark.parametrize(
    ("raw", "sort", "want"),
    [
        ("/p%61th/x?", False, "/path/x"),
        ("/a%2fb?x=%7e", False, "/a%2Fb?x=~"),
        ("/search?b=2&a=1", True, "/search?a=1&b=2"),
        ("/search?b=2&a=1", False, "/search?b=2&a=1"),
        ("/x#frag", False, "/x"),
        ("", False, ""),
        (None, False, ""),
    ],
)
def test_normalise_uri(raw: str | None, sort: bool, want: str) -> None:
    assert lp.normalise_uri(raw, sort_query=sort) == want


def test_endpoint_strips_query() -> None:
    assert lp.endpoint("/search?b=2") == "/search" and lp.endpoint(None) == "-"


def test_plan_reads_plain_append() -> None:
    reads = lp.plan_reads(100, lp.FileState("/l", 250, 7), lp.FileState("/l.1", 900, 3), 7)
    assert reads == [lp.ReadSpec("/l", 100, "new bytes since offset")]


def test_plan_reads_rotated_by_inode() -> None:
    reads = lp.plan_reads(100, lp.FileState("/l", 500, 8), lp.FileState("/l.1", 300, 7), 7)
    assert [(r.path, r.start) for r in reads] == [("/l.1", 100), ("/l", 0)]


def test_plan_reads_shrunk_without_inode() -> None:
    reads = lp.plan_reads(100, lp.FileState("/l", 40), lp.FileState("/l.1", 300))
    assert [(r.path, r.start) for r in reads] == [("/l.1", 100), ("/l", 0)]
    # no usable .1 (shorter than the offset): only the new file
    reads = lp.plan_reads(100, lp.FileState("/l", 40), lp.FileState("/l.1", 50))
    assert [(r.path, r.start) for r in reads] == [("/l", 0)]


def test_rotated_log_read_end_to_end(tmp_path: Path) -> None:
    lines = (LOGS / "labctl.log").read_text().splitlines(keepends=True)
    log = tmp_path / "access.log"
    log.write_text("".join(lines[:5]))
    offset, inode = log.stat().st_size, log.stat().st_ino
    log.write_text("".join(lines[:8]))          # 3 more lines, then logrotate renames
    log.rename(tmp_path / "access.log.1")
    log.write_text("".join(lines[8:]))          # 5 lines in the new file
    rot = tmp_path / "access.log.1"
    reads = lp.plan_reads(offset, lp.FileState(str(log), log.stat().st_size, log.stat().st_ino),
                          lp.FileState(str(rot), rot.stat().st_size, rot.stat().st_ino), inode)
    fmt, res = lp.LogFormat("labctl"), lp.ParseResult()
    for spec in reads:
        res.extend(lp.parse_text(Path(spec.path).read_bytes()[spec.start:].decode(), fmt))
    assert len(res.records) == 8 and res.malformed == 0


def test_filter_time() -> None:
    recs = lp.parse_text((LOGS / "custom.log").read_text(),
                         lp.LogFormat((LOGS / "custom.format").read_text().strip())).records
    got = lp.filter_time(recs, 1795764745.25, 1795764745.29)
    assert [r.status for r in got] == [200, 200, 404, 503]


def test_a_format_with_nginx_regex_captures_compiles_and_parses() -> None:
    """`$1`..`$9` are nginx variables (regex captures) but not regex group names: the format
    compiled to a re.error traceback in verify (found by tests/unit/fuzz/test_text.py)."""
    fmt = lp.LogFormat('$remote_addr $1 "$request" $status')
    rec = fmt.parse_line('10.0.0.1 abc "GET /x HTTP/1.1" 200')
    assert (rec.remote_addr, rec.uri, rec.status) == ("10.0.0.1", "/x", 200)
    assert fmt.variables == ["remote_addr", "1", "request", "status"]


def test_two_variables_with_nothing_between_them_are_refused_naming_both() -> None:
    """Their values run together in the log (which is which cannot be told), and a regex for a
    chain of them backtracked for seconds on a line that did not match (found by atheris)."""
    with pytest.raises(lp.LogFormatError, match=r"\$remote_addr and \$remote_user have nothing"):
        lp.LogFormat('$remote_addr$remote_user [$time_local] "$request" $status')
    lp.LogFormat('$remote_addr $remote_user [$time_local] "$request" $status')   # a space: fine
