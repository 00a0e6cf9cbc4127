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


def _module_name(path: Path) -> str:
    rel = path.relative_to(ENGINE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _engine_imports(path: Path) -> set[str]:
    """Every engine module this file imports, wherever the import is (function bodies and
    ``if TYPE_CHECKING:`` blocks count: they are cycles all the same)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("engine."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "engine" or node.module.startswith("engine.")):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_engine_has_no_import_cycles() -> None:
    modules = {_module_name(p): p for p in ENGINE.rglob("*.py")}
    graph = {m: {d for d in _engine_imports(p) if d in modules and d != m}
             for m, p in modules.items()}
    for deps in graph.values():
        deps.discard("engine")          # engine/__init__.py: version constants, no imports
    seen: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if seen.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(d):], d]))
            if d not in seen:
                visit(d)
        path.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)


def test_engine_imports_at_module_top_unless_marked_lazy() -> None:
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and \
                            "# lazy:" not in lines[inner.lineno - 1]:
                        offenders.append(f"{path.name}:{inner.lineno}")
        if "TYPE_CHECKING" in path.read_text():
            offenders.append(f"{path.name}: TYPE_CHECKING")
    assert not offenders, offenders
