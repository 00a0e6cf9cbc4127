"""F1's coverage-guided harness (bench/fuzz_atheris.py) still runs: a short bounded run of two
targets under atheris (skipped where atheris has no wheel and is not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "bench" / "fuzz_atheris.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HARNESS), *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_bad_target_is_refused_with_the_list() -> None:
    out = run("nosuch")
    assert out.returncode == 2 and "unknown target 'nosuch'" in out.stderr
    assert "header" in out.stderr and "inventory" in out.stderr
    listing = run("--list")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 10


@pytest.mark.parametrize("target", ["header", "channel-server"])
def test_a_short_coverage_guided_run_finds_nothing(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    out = run(target, "--limit-ms", "1000", "--", "-runs=2000", "-seed=1",
              f"-artifact_prefix={tmp_path}/")          # a finding's file: not in the repo
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Done 2000 runs" in out.stderr and "cov: " in out.stderr


def test_replay_prints_the_calls_an_input_made(tmp_path: Path) -> None:
    """--replay (no atheris needed): the parser calls of one input, and whether it passes."""
    data = tmp_path / "input"
    data.write_bytes(bytes(range(256)) * 2)
    out = run("logformat", "--replay", str(data))
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "passes", out
    assert out.stdout.startswith("logline: LogFormat(")
