"""nginx `log_format` strings compiled to regexes; access-log lines parsed into records.

A format is a string of literals and `$variables` (or `${variables}`), exactly as written in
nginx's `log_format` directive. Each variable becomes one capture group: well-known variables
get a precise pattern, any other variable matches up to the next literal character of the format
(so `"$http_user_agent"` captures everything between the quotes, and `$connection` one token).
A line that does not match, or whose fields do not convert, is counted as malformed with its line
number — never fatal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
COMMON = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent'
#: The lab's format before `$host` was added (lines of an older lab still parse as `labctl`).
LABCTL_V1 = (
    '$remote_addr [$time_iso8601] "$request_method $request_uri $server_protocol" $status '
    '$body_bytes_sent $request_length "$content_length" $request_time $connection '
    '$connection_requests "$http_user_agent"'
)
#: ... and before `$remote_port` was added.
LABCTL_V2 = LABCTL_V1 + ' "$host"'
#: The lab's format: `$remote_port` tells apart the sampling units of `-r` (client address and
#: port) when clients reuse their ports.
LABCTL = LABCTL_V2 + ' $remote_port'
#: Format names usable in an inventory instead of a full `log_format` string.
NAMED_FORMATS = {"combined": COMBINED, "common": COMMON, "main": COMBINED, "labctl": LABCTL}
#: Older versions of a named format, tried when a line does not match the current one.
OLDER_FORMATS = {"labctl": (LABCTL_V2, LABCTL_V1)}

_INT = r"-|\d+"
_FLOAT = r"-|\d+(?:\.\d+)?"
_KNOWN: dict[str, str] = {
    "remote_addr": r"[0-9A-Fa-f.:]+|-",
    "time_local": r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}",
    "time_iso8601": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
    "msec": r"\d+(?:\.\d+)?",
    "status": r"\d{3}",
    "body_bytes_sent": _INT,
    "bytes_sent": _INT,
    "request_length": _INT,
    "content_length": _INT + "|",
    "request_time": _FLOAT,
    "upstream_response_time": r"[-\d.,: ]*",
    "request_method": r"[A-Za-z_-]+|-",
    "connection": _INT,
    "connection_requests": _INT,
    "server_port": _INT,
    "remote_port": _INT,
}
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)}


class LogFormatError(ValueError):
    """A `log_format` string that cannot be compiled (names the format)."""


@dataclass(frozen=True)
class LogRecord:
    """One access-log line. Fields the format does not carry (or logs as `-`) are None.

    `time` is POSIX seconds (UTC). `content_length` is the request body length as the client
    declared it; `request_time` is seconds. `connection`/`connection_requests` identify the
    client connection when the format logs them (used to count sessions); `remote_port`
    (`$remote_port`) with `remote_addr` is the unit tcpcopy's `-r` samples by. `server_port` (nginx
    `$server_port`) tells the `-x` mappings apart when several ports are copied. `host` is
    `$http_host` or else `$host`; `headers` holds every `$http_<name>` field logged, as
    (lower-case header name, value) with `_` read as `-` (what verify's selection can test).
    """

    time: Optional[float]
    remote_addr: Optional[str]
    method: Optional[str]
    uri: Optional[str]
    status: Optional[int]
    body_bytes_sent: Optional[int]
    request_length: Optional[int]
    content_length: Optional[int]
    request_time: Optional[float]
    connection: Optional[int] = None
    connection_requests: Optional[int] = None
    server_port: Optional[int] = None
    host: Optional[str] = None
    remote_port: Optional[int] = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Malformed:
    """A line that did not parse: where it was and why (the line itself is cut short)."""

    source: str
    line_no: int
    reason: str
    text: str


@dataclass
class ParseResult:
    """Records parsed from one or more chunks of log text, plus the malformed-line count."""

    records: list[LogRecord] = field(default_factory=list)
    malformed: int = 0
    samples: list[Malformed] = field(default_factory=list)
    lines: int = 0

    MAX_SAMPLES = 5

    def add_malformed(self, bad: Malformed) -> None:
        self.malformed += 1
        if len(self.samples) < self.MAX_SAMPLES:
            self.samples.append(bad)

    def extend(self, other: ParseResult) -> None:
        self.records.extend(other.records)
        self.lines += other.lines
        self.malformed += other.malformed
        room = self.MAX_SAMPLES - len(self.samples)
        self.samples.extend(other.samples[:max(room, 0)])


class LogFormat:
    """A compiled nginx `log_format`: `parse_line(text) -> LogRecord` or raises ValueError."""

    def __init__(self, fmt: str, name: str = "") -> None:
        self.source = NAMED_FORMATS.get(fmt, fmt)
        self.name = name or (fmt if fmt in NAMED_FORMATS else "custom")
        self.variables: list[str] = []
        try:
            self.regex = re.compile(self._compile(self.source))
        except re.error as exc:  # a format no nginx would load; one clear line, not a traceback
            raise LogFormatError(f"log_format {self.source!r}: {exc}") from None
        self.older = [LogFormat(old, self.name) for old in OLDER_FORMATS.get(fmt, ())]

    def _compile(self, fmt: str) -> str:
        parts: list[str] = ["^"]
        pos = 0
        matches = list(_VAR.finditer(fmt))
        if not matches:
            raise LogFormatError(f"log_format {fmt!r} has no $variables")
        for i, m in enumerate(matches):
            parts.append(_literal(fmt[pos:m.start()]))
            var = m.group(1) or m.group(2)
            if i and m.start() == pos:
                # nothing between two variables: their values run together in the log and
                # cannot be told apart (and a regex for them backtracks exponentially)
                prev = matches[i - 1].group(1) or matches[i - 1].group(2)
                raise LogFormatError(f"log_format {fmt!r}: ${prev} and ${var} have nothing "
                                     "between them, so their values cannot be told apart; "
                                     "put a space or another character between them")
            after = fmt[m.end():matches[i + 1].start()] if i + 1 < len(matches) else fmt[m.end():]
            parts.append(self._group(var, after, last=i + 1 == len(matches)))
            pos = m.end()
        parts.append(_literal(fmt[pos:]))
        parts.append(r"\s*$")
        return "".join(parts)

    def _group(self, var: str, after: str, last: bool) -> str:
        if var in _KNOWN:
            pattern = _KNOWN[var]
        elif after:
            stop = re.escape(after[0])
            pattern = rf"[^{stop}]*" if after[0] != " " else r"\S*"
        else:
            pattern = r".*" if last else r"\S*"
        if var in self.variables:  # a repeated variable: match it, capture it once
            return f"(?:{pattern})"
        self.variables.append(var)
        if not var.isidentifier():  # nginx's $1..$9 (regex captures): not a group name
            return f"({pattern})"
        return f"(?P<{var}>{pattern})"

    def parse_line(self, line: str) -> LogRecord:
        m = self.regex.match(line)
        if not m:
            for older in self.older:
                if older.regex.match(line):
                    return older.parse_line(line)
            raise ValueError(f"does not match log_format {self.name!r}")
        try:
            return _record(m.groupdict())
        except (KeyError, OverflowError) as exc:  # e.g. a month name that is no month
            raise ValueError(f"a field does not convert: {exc!r}") from None


def _literal(text: str) -> str:
    # Runs of spaces in a format are single spaces in practice; be lenient about their count:
    # one run is one \s+ (a \s+ per space made runs of them backtrack exponentially on a line
    # that does not match: 28 spaces took 14 s; found by bench/fuzz_atheris.py).
    return r"\s+".join(re.escape(chunk) for chunk in re.split(" +", text)) if text else ""


def _opt(value: Optional[str]) -> Optional[str]:
    if value is None or value in ("-", ""):
        return None
    return value


def _int(value: Optional[str]) -> Optional[int]:
    v = _opt(value)
    return int(v) if v is not None else None


def _float(value: Optional[str]) -> Optional[float]:
    v = _opt(value)
    return float(v) if v is not None else None


def parse_time_local(text: str) -> float:
    """`10/Oct/2000:13:55:36 -0700` -> POSIX seconds (month names are always English)."""
    day, mon, rest = text.split("/", 2)
    year, hh, mm, ss_zone = rest.split(":", 3)
    ss, zone = ss_zone.split(" ")
    sign = -1 if zone[0] == "-" else 1
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
    dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                  tzinfo=timezone(offset))
    return dt.timestamp()


def parse_time_iso(text: str) -> float:
    """`2000-10-10T13:55:36+00:00` (also `Z`, no colon, no zone = UTC) -> POSIX seconds."""
    t = text[:-1] + "+00:00" if text.endswith("Z") else text
    if re.search(r"[+-]\d{4}$", t):
        t = t[:-2] + ":" + t[-2:]
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _time(g: dict[str, Optional[str]]) -> Optional[float]:
    if _opt(g.get("msec")):
        return float(g["msec"] or 0)
    if _opt(g.get("time_iso8601")):
        return parse_time_iso(g["time_iso8601"] or "")
    if _opt(g.get("time_local")):
        return parse_time_local(g["time_local"] or "")
    return None


def _method_uri(g: dict[str, Optional[str]]) -> tuple[Optional[str], Optional[str]]:
    method, uri = _opt(g.get("request_method")), _opt(g.get("request_uri"))
    request = _opt(g.get("request"))
    if request and (method is None or uri is None):
        pieces = request.split(" ")
        if len(pieces) >= 2:
            method = method or pieces[0]
            uri = uri or pieces[1]
    if uri is None and _opt(g.get("uri")):
        args = _opt(g.get("args"))
        uri = (g.get("uri") or "") + (f"?{args}" if args else "")
    return method, uri


def _headers(g: dict[str, Optional[str]]) -> tuple[tuple[str, str], ...]:
    """`$http_x_api_key` -> ("x-api-key", value), for every `$http_*` field that has a value."""
    return tuple((k[5:].replace("_", "-").lower(), v) for k, v in g.items()
                 if k.startswith("http_") and v is not None and _opt(v) is not None)


def _record(g: dict[str, Optional[str]]) -> LogRecord:
    method, uri = _method_uri(g)
    return LogRecord(
        time=_time(g),
        remote_addr=_opt(g.get("remote_addr")),
        method=method,
        uri=uri,
        status=_int(g.get("status")),
        body_bytes_sent=_int(g.get("body_bytes_sent")),
        request_length=_int(g.get("request_length")),
        content_length=_int(g.get("content_length")),
        request_time=_float(g.get("request_time")),
        connection=_int(g.get("connection")),
        connection_requests=_int(g.get("connection_requests")),
        server_port=_int(g.get("server_port")),
        host=_opt(g.get("http_host")) or _opt(g.get("host")),
        headers=_headers(g),
        remote_port=_int(g.get("remote_port")),
    )


def parse_lines(lines: Iterable[str], fmt: LogFormat, source: str = "",
                first_line_no: int = 1) -> ParseResult:
    """Parse log lines; blank lines are skipped, bad ones counted with their line number."""
    result = ParseResult()
    for n, line in enumerate(lines, start=first_line_no):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        result.lines += 1
        try:
            result.records.append(fmt.parse_line(text))
        except (ValueError, KeyError, OverflowError) as exc:
            result.add_malformed(Malformed(source, n, str(exc), text[:200]))
    return result


def parse_text(text: str, fmt: LogFormat, source: str = "") -> ParseResult:
    """Parse a chunk of log text. A last line without its newline is incomplete: it is skipped
    (the caller re-reads it next time), not counted as malformed."""
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]
    return parse_lines(lines, fmt, source)


def complete_prefix(data: bytes) -> bytes:
    """The part of `data` up to and including its last newline (what `parse_text` consumes)."""
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut >= 0 else b""


def filter_time(records: Sequence[LogRecord], start: Optional[float],
                end: Optional[float]) -> list[LogRecord]:
    """Records whose time lies in [start, end]; records without a time are kept only when
    no bound is given (they cannot be placed in a window)."""
    if start is None and end is None:
        return list(records)
    def keep(t: float) -> bool:
        return (start is None or t >= start) and (
            end is None or t <= end)
    return [r for r in records if r.time is not None and keep(r.time)]
