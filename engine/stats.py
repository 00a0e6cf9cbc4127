"""Shared by both daemons: log-line formatting, a tiny logger, the atomic JSON stats file.

- ``format_log_line(level, msg, now)`` -> ``YYYY/MM/DD HH:MM:SS +mmm [level] msg`` (study §6).
- ``Logger(path=None, min_level="info")``: appends formatted lines to ``path`` (stderr when None);
  ``logger.info("...")`` etc.; an errno is appended as `` (strerror)`` via ``errno=``. A worker
  of ``--workers N`` logs with ``tag="[wK]"`` and ``follow=True``: it never rotates the shared
  file itself but reopens ``path`` (within a second) once the parent (``rotate_shared()``) did.
- ``stats_document(...)`` builds the contract dict; ``write_stats(path, doc)`` writes it atomically
  (tmp file in the same directory + rename), so readers never see a partial file. It is not
  fsynced: it is rewritten every second, readers need it whole, not durable, and an fsync a
  second would be a journal commit a second on the production host's disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import IO, Any, Dict, List, Mapping, Optional

from engine.metrics import prometheus_text, replace_file, write_metrics

LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")


def print_out(text: str) -> None:
    """Print help/version text; a closed pipe (``tcpcopy -h | head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())      # no second error at interpreter exit


def format_log_line(level: str, msg: str, now: float) -> str:
    lt = time.localtime(now)
    ms = int((now - int(now)) * 1000)
    return f"{time.strftime('%Y/%m/%d %H:%M:%S', lt)} +{ms:03d} [{level}] {msg}"


LOG_MAX_BYTES = 16 << 20     # a log file is rotated (PATH.1) past this size


class Logger:
    """Line logger with the original format. Never raises on write errors (logs are best-effort)."""

    def __init__(self, path: Optional[str] = None, min_level: str = "info",
                 clock: Any = time.time, max_bytes: int = LOG_MAX_BYTES, tag: str = "",
                 follow: bool = False) -> None:
        self.path = path
        self.tag = f"{tag} " if tag else ""
        self.follow = follow
        self._checked = 0.0
        self._rank = LEVELS.index(min_level) if min_level in LEVELS else LEVELS.index("info")
        self._clock = clock
        self._fh: Optional[IO[str]] = None
        self.max_bytes = max_bytes
        self._size = 0
        if path is not None:
            self._fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            with contextlib.suppress(OSError):
                self._size = os.fstat(self._fh.fileno()).st_size

    def log(self, level: str, msg: str, errno: Optional[int] = None) -> None:
        if level in LEVELS and LEVELS.index(level) > self._rank:
            return
        if errno:
            msg = f"{msg} ({os.strerror(errno)})"
        now = self._clock()
        line = format_log_line(level, self.tag + msg, now) + "\n"
        with contextlib.suppress(OSError, ValueError):
            if self._fh is not None:
                if self.follow:
                    if now - self._checked >= 1.0:
                        self._checked = now
                        self._reopen_if_moved()
                elif self._size + len(line) > self.max_bytes:
                    self._rotate()
            (self._fh or sys.stderr).write(line)
            self._size += len(line)

    def _rotate(self) -> None:
        """The log grew past ``max_bytes``: it becomes ``PATH.1`` (one old file is kept) and a
        new one starts, so a daemon that runs for days never fills the disk."""
        assert self._fh is not None and self.path is not None
        self._fh.close()
        os.replace(self.path, self.path + ".1")
        self._fh = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._size = 0

    def _reopen_if_moved(self) -> None:
        """follow mode: another process rotated ``path``; write to the new file."""
        assert self._fh is not None and self.path is not None
        try:
            moved = os.stat(self.path).st_ino != os.fstat(self._fh.fileno()).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            self._fh.close()
            self._fh = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def rotate_shared(self) -> None:
        """The parent of workers: rotate when the file (written by every worker, each line one
        O_APPEND write) grew past ``max_bytes``; the workers follow within a second."""
        if self._fh is None or self.path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if os.fstat(self._fh.fileno()).st_size > self.max_bytes:
                self._rotate()

    def error(self, msg: str, errno: Optional[int] = None) -> None:
        self.log("error", msg, errno)

    def warn(self, msg: str, errno: Optional[int] = None) -> None:
        self.log("warn", msg, errno)

    def notice(self, msg: str) -> None:
        self.log("notice", msg)

    def info(self, msg: str) -> None:
        self.log("info", msg)

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def stats_document(tool: str, version: str, pid: int, started_at: float, updated_at: float,
                   state: str, counters: Mapping[str, int], **extra: Any) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "tool": tool, "version": version, "pid": pid, "started_at": started_at,
        "updated_at": updated_at, "state": state, "counters": dict(counters),
    }
    doc.update(extra)
    return doc


def write_stats(path: Optional[str], doc: Mapping[str, Any],
                metrics_file: Optional[str] = None) -> None:
    """Atomically replace ``path`` with the JSON document (and ``metrics_file`` with its
    Prometheus text, ``engine.metrics``). Raises OSError."""
    if metrics_file:
        write_metrics(metrics_file, prometheus_text([(doc, {})]))
    if not path:
        return
    replace_file(path, (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8"))


def stat_lines(c: Dict[str, int], active: int) -> List[str]:
    """tcpcopy's periodic statistics lines with the original texts (study §6)."""
    obs = (c["sessions_obsolete"] + c["sessions_timeout"] + c["sessions_shed"]
           + c["sessions_no_synack"])
    return [
        f"active:{active},rel:{c['sessions_released']},obs del:{obs},"
        f"tw:{c['sessions_time_wait']}",
        f"conns:{c['conns']},resp:{c['resp']},c-resp:{c['resp_cont']}",
        f"resp fin:{c['resp_fin']},resp rst:{c['resp_rst']}",
        f"send:{c['sent']},send content:{c['sent_content']}",
        f"send syn:{c['sent_syn']}, fin:{c['sent_fin']},reset:{c['sent_rst']}",
        f"reconnect:{c['reconnect']},for no syn:{c['recon_for_no_syn']}",
        f"retransmit:{c['retransmit']}",
        f"recv packs after retransmission:{c['retrans_succ']}",
        f"syn cnt:{c['clt_syn']},all clt:{c['clt_packs']},clt cont:{c['clt_cont']}",
        f"total cont retransmit:{c['clt_con_retrans']}, frag:{c['frag']}",
        f"total captured packets:{c['captured']}",
        f"losses: kernel drops:{c['kernel_drops']},malformed:{c['malformed']},"
        f"sampled out:{c['sampled_out']},table full:{c['table_full']},"
        f"shed:{c['sessions_shed']},no syn-ack:{c['sessions_no_synack']},"
        f"timeout:{c['sessions_timeout']},send errors:{c['send_errors']},"
        f"no intercept:{c['sessions_no_intercept']},tuple refused:{c['tuple_refused']}",
        f"intercept outages: reconnects:{c['channel_reconnects']},held:{c['sessions_held']},"
        f"resumed:{c['sessions_resumed']},hold expired:{c['sessions_hold_expired']}",
        f"target silent (--target-stall-s): connections not copied:"
        f"{c.get('target_stalled', 0)},sessions shed:{c.get('sessions_stall_shed', 0)}",
        f"target: refused:{c['target_refused']} (sessions:{c['sessions_refused']}),"
        f"resets:{c['target_resets']},syn-ack repeated:{c['synack_retrans']},"
        f"sends refused and retried:{c['send_retried']}",
    ]
