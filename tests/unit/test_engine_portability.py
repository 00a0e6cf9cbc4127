"""The engine ships to hosts as a zipapp: standard library only, and Python >= 3.9."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def _imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_engine_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"engine", "__future__"}
    offenders = {
        f"{path.name}: {name}"
        for path in sorted(ENGINE.rglob("*.py"))
        for name in _imported_top_modules(path)
        if name not in allowed
    }
    assert not offenders, f"engine/ must be stdlib only: {sorted(offenders)}"


def test_engine_parses_as_python_3_9() -> None:
    for path in sorted(ENGINE.rglob("*.py")):
        ast.parse(path.read_text(), str(path), feature_version=(3, 9))


@pytest.mark.skipif(shutil.which("vermin") is None and not (
    Path(sys.executable).parent / "vermin").exists(), reason="vermin not installed")
def test_engine_needs_no_newer_python_than_3_9() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    proc = subprocess.run(
        [vermin, "--no-tips", "--violations", "-t=3.9-", "--eval-annotations", str(ENGINE)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_engine_has_no_type_checking_blocks() -> None:
    """Import cycles and lazy imports are checked for the whole project in test_architecture;
    the engine also keeps no `if TYPE_CHECKING:` blocks (its types are real imports)."""
    offenders = [path.name for path in sorted(ENGINE.rglob("*.py"))
                 if "TYPE_CHECKING" in path.read_text()]
    assert not offenders, offenders
