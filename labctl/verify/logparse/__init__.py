"""nginx access logs (pure): `log_format` strings compiled to regexes, lines parsed into records
(`format`), URIs normalised for matching (`uri`), and which bytes of a possibly rotated log to
read next (`rotation`). Callers import from the package: `from labctl.verify import logparse`.
"""

from labctl.verify.logparse.format import (
    COMBINED,
    COMMON,
    LABCTL,
    LABCTL_V1,
    LABCTL_V2,
    NAMED_FORMATS,
    OLDER_FORMATS,
    LogFormat,
    LogFormatError,
    LogRecord,
    Malformed,
    ParseResult,
    complete_prefix,
    filter_time,
    parse_lines,
    parse_text,
    parse_time_iso,
    parse_time_local,
)
from labctl.verify.logparse.rotation import FileState, ReadSpec, plan_reads
from labctl.verify.logparse.uri import endpoint, normalise_uri

__all__ = [
    "COMBINED", "COMMON", "LABCTL", "LABCTL_V1", "LABCTL_V2", "NAMED_FORMATS", "OLDER_FORMATS",
    "FileState", "LogFormat", "LogFormatError", "LogRecord", "Malformed", "ParseResult", "ReadSpec",
    "complete_prefix", "endpoint", "filter_time", "normalise_uri", "parse_lines", "parse_text",
    "parse_time_iso", "parse_time_local", "plan_reads",
]
