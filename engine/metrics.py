"""The daemons' counters in the Prometheus text exposition format (pure, plus one atomic write).

``prometheus_text(doc, labels)`` turns a stats document (``engine.stats.stats_document``) into
metric families named ``<tool>_<counter>`` with the original counter names (``tcpcopy_captured``,
``intercept_resp_routed`` ...), so a long-running copy shows up on the dashboards people already
have; plus ``<tool>_up`` (1 while the daemon runs), ``<tool>_sessions_active`` (a gauge, tcpcopy),
``tcpcopy_copy_delay_last_seconds`` and ``..._max_seconds`` (gauges: how long the last copied
request, and the longest-waiting one, waited between capture and sending; a copy falling behind
shows here) and ``<tool>_stats_updated_seconds`` (when the document was written, Unix time). With
``--workers N`` the parent writes the merged document (the sum over the workers).

``write_metrics(path, text)`` replaces ``path`` atomically (a temporary file in the same
directory, then rename), as node_exporter's textfile collector requires: it never reads a
partial file. Used by both daemons' ``--metrics-file`` and by ``labctl status --prometheus``.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Iterable, List, Mapping, Tuple

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")
GAUGES = ("sessions_active",)
DELAY_GAUGES = ("last", "max")      # of tcpcopy's copy_delay_ms, as seconds


def metric_name(tool: str, name: str) -> str:
    return _NAME_OK.sub("_", f"{tool}_{name}")


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{_NAME_OK.sub("_", k)}="{_label_value(str(v))}"'
                     for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def samples(doc: Mapping[str, Any]) -> List[Tuple[str, str, float]]:
    """(metric name, type, value) of one stats document, in a stable order."""
    tool = str(doc.get("tool") or "engine")
    out: List[Tuple[str, str, float]] = [
        (metric_name(tool, "up"), "gauge", 1.0 if doc.get("state") == "running" else 0.0)]
    updated = doc.get("updated_at")
    if isinstance(updated, (int, float)):
        out.append((metric_name(tool, "stats_updated_seconds"), "gauge", float(updated)))
    for key in GAUGES:
        value = doc.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((metric_name(tool, key), "gauge", float(value)))
    delay = doc.get("copy_delay_ms")
    if isinstance(delay, Mapping):
        for key in DELAY_GAUGES:
            value = delay.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append((metric_name(tool, f"copy_delay_{key}_seconds"), "gauge",
                            float(value) / 1000.0))
    counters = doc.get("counters") or {}
    for name in sorted(counters):
        value = counters[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((metric_name(tool, name), "counter", float(value)))
    return out


def prometheus_text(docs: Iterable[Tuple[Mapping[str, Any], Mapping[str, str]]]) -> str:
    """The exposition text of several (document, labels) pairs: one HELP/TYPE per family."""
    families: dict = {}
    for doc, labels in docs:
        lab = format_labels(labels)
        for name, kind, value in samples(doc):
            families.setdefault(name, (kind, []))[1].append(f"{name}{lab} {_number(value)}")
    lines: List[str] = []
    for name in sorted(families):
        kind, rows = families[name]
        lines.append(f"# HELP {name} labctl engine counter {name.split('_', 1)[-1]}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(rows)
    return "\n".join(lines) + "\n" if lines else ""


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1 << 53 else repr(value)


def replace_file(path: str, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (temp file in the same directory + rename, so a
    reader never sees a partial file; no fsync: these files are rewritten every few seconds and
    need to be whole, not durable). os-level calls: open, write, close, rename. Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_metrics(path: str, text: str) -> None:
    """Atomically replace ``path`` with ``text``. Raises OSError."""
    replace_file(path, text.encode("utf-8"))


__all__ = ["format_labels", "metric_name", "prometheus_text", "replace_file", "samples",
           "write_metrics"]
