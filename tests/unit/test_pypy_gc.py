"""Under PyPy the daemons run with a small nursery (``engine.pypygc``, RELIABILITY.md P2):
the command line they exec again, the exec itself, and tcpcopy's resident size under
soak-like traffic (``bench/session_soak.py``) levelling off instead of climbing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

from engine.pypygc import GC_ENV, reexec_argv

ROOT = Path(__file__).resolve().parents[2]
PYPY = shutil.which("pypy3")
needs_pypy = pytest.mark.skipif(PYPY is None, reason="pypy3 is not installed "
                                "(scripts/install.sh installs it)")


def test_zipapp_is_run_again_as_it_was() -> None:
    argv = ["/var/lib/labctl/engine.pyz", "tcpcopy", "-x", "80-10.0.0.2:80"]
    assert reexec_argv("/usr/bin/pypy3", argv, {}, True) == ["/usr/bin/pypy3", *argv]


def test_dash_m_engine_is_run_again_with_dash_m() -> None:
    argv = ["/src/engine/__main__.py", "intercept", "-F", "tcp"]
    assert reexec_argv("/usr/bin/pypy3", argv, {}, True) == [
        "/usr/bin/pypy3", "-m", "engine", "intercept", "-F", "tcp"]


def test_nothing_to_do_under_cpython_or_with_the_settings_given() -> None:
    argv = ["/x/engine.pyz", "tcpcopy"]
    assert reexec_argv("/usr/bin/python3", argv, {}, False) is None
    assert reexec_argv("/usr/bin/pypy3", argv, dict(GC_ENV), True) is None
    # an operator's own value is kept: no exec, whatever it says
    assert reexec_argv("/usr/bin/pypy3", argv, {"PYPY_GC_NURSERY": "64MB"}, True) is None


def test_no_exec_when_the_command_cannot_be_run_again() -> None:
    for argv in (["-c", "tcpcopy"], [""], []):
        assert reexec_argv("/usr/bin/pypy3", argv, {}, True) is None
    assert reexec_argv("", ["/x/engine.pyz"], {}, True) is None


def _env_without_gc_settings() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPY_GC_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@needs_pypy
def test_pypy_process_execs_itself_with_a_small_nursery(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "print('started', flush=True)\n"
                      "from engine.pypygc import ensure_gc_settings, gc_banner\n"
                      "ensure_gc_settings()\nprint(gc_banner())\n")
    assert PYPY is not None
    res = subprocess.run([PYPY, str(script)], env=_env_without_gc_settings(),
                         capture_output=True, text=True, timeout=120, check=True)
    lines = res.stdout.splitlines()
    # the first interpreter printed 'started' and was replaced; the second printed both
    assert lines == ["started", "started", "PyPy GC: nursery 4.0MB (PYPY_GC_NURSERY=4MB)"]


@needs_pypy
def test_detach_starts_the_daemon_with_the_settings_so_it_need_not_exec_again(
        tmp_path: Path) -> None:
    """labctl's launch argv passes GC_ENV through `detach --env`: the daemon's interpreter
    starts with the small nursery, prints its banner once (no second start), same pid."""
    script = tmp_path / "probe.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "print('started', os.getpid(), flush=True)\n"
                      "from engine.pypygc import ensure_gc_settings, gc_banner\n"
                      "ensure_gc_settings()\nprint(gc_banner(), flush=True)\n")
    pid_file, log = tmp_path / "pid", tmp_path / "out"
    env = [a for k, v in GC_ENV.items() for a in ("--env", f"{k}={v}")]
    assert PYPY is not None
    res = subprocess.run([PYPY, "-m", "engine", "detach", "--pid-file", str(pid_file),
                          "--log-file", str(log), *env, "--", PYPY, str(script)],
                         env=_env_without_gc_settings(), capture_output=True, text=True,
                         timeout=120, check=True)
    pid = int(res.stdout.split()[-1])
    deadline = time.monotonic() + 60
    while "PyPy GC" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the detached probe did not finish"
        time.sleep(0.05)
    assert log.read_text().splitlines() == [
        f"started {pid}", "PyPy GC: nursery 4.0MB (PYPY_GC_NURSERY=4MB)"]


def test_detach_refuses_an_env_without_a_value(tmp_path: Path) -> None:
    res = subprocess.run(["python3", "-m", "engine", "detach", "--env", "PYPY_GC_NURSERY",
                          "--", "true"], env=_env_without_gc_settings(), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "--env 'PYPY_GC_NURSERY': expected NAME=VALUE" in res.stderr


def _soak(extra: List[str]) -> List[Dict[str, object]]:
    assert PYPY is not None
    res = subprocess.run([PYPY, str(ROOT / "bench" / "session_soak.py"), "--seconds", "90",
                          "--every", "30", *extra], env=_env_without_gc_settings(),
                         capture_output=True, text=True, timeout=600, check=True)
    return [row for row in map(json.loads, res.stdout.splitlines()) if "rss_mb" in row]


@needs_pypy
def test_tcpcopy_rss_levels_off_under_pypy() -> None:
    """90 s of the soak's traffic (~8,600 sessions, 90,000 requests) on a virtual clock: from
    30 s on, RSS stays within 3 %. With the host's nursery (150 MB on the lab's VM) it climbed
    245 -> 265 MB (+8 %) between 30 and 90 s, and on for as long as it ran."""
    rows = _soak([])
    assert [r["t"] for r in rows] == [0.0, 30.0, 60.0, 90.0]
    assert rows[-1]["nursery_size"] == "4.0MB"
    base = float(rows[1]["rss_mb"])            # type: ignore[arg-type]
    last = float(rows[-1]["rss_mb"])           # type: ignore[arg-type]
    assert last <= base * 1.03, rows
    assert rows[-1]["sessions_active"] == 20  # the traffic really ran through sessions
