"""The drill and report packages keep the import directions their docstrings promise: no
cycles, no imports hidden inside functions, report never reaching into the acting drill."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent.parent / "labctl"
#: What a report module other than report.drill must not import: the drill and anything acting.
_REPORT_PURE = ("labctl.drill", "labctl.verify.fetch", "labctl.verify.diagnose", "labctl.up",
                "labctl.compare.fetch",
                "labctl.transport", "labctl.cli")
#: module -> the labctl modules (or packages) it must not import.
_NOT_RUNBOOK = ("labctl.drill.model", "labctl.drill.context", "labctl.drill.faults",
                "labctl.drill.steps", "labctl.drill.run", "labctl.drill.fake", "labctl.report",
                "labctl.cli")
FORBIDDEN = {
    "drill.runbook": _NOT_RUNBOOK,
    "drill.runbook.steps": (*_NOT_RUNBOOK, "labctl.drill.runbook.parse"),
    "drill.runbook.parse": _NOT_RUNBOOK,
    "drill.model": ("labctl.drill.context", "labctl.drill.faults", "labctl.drill.steps",
                    "labctl.drill.run", "labctl.drill.fake", "labctl.report", "labctl.cli"),
    "drill.context": ("labctl.drill.faults", "labctl.drill.steps", "labctl.drill.run",
                      "labctl.drill.fake", "labctl.report", "labctl.cli"),
    "drill.faults": ("labctl.drill.steps", "labctl.drill.run", "labctl.drill.fake",
                     "labctl.report", "labctl.cli"),
    "drill.steps": ("labctl.drill.run", "labctl.drill.fake", "labctl.report", "labctl.cli"),
    "drill.run": ("labctl.drill.faults", "labctl.drill.steps", "labctl.drill.fake",
                  "labctl.report", "labctl.cli"),
    "drill.fake": ("labctl.drill.faults", "labctl.drill.steps", "labctl.drill.run",
                   "labctl.report", "labctl.cli"),
    "report.drill": ("labctl.drill.context", "labctl.drill.faults", "labctl.drill.steps",
                     "labctl.drill.run", "labctl.drill.fake", "labctl.cli", "labctl.up"),
    **{f"report.{m}": _REPORT_PURE for m in ("verify", "compare", "series", "plots", "figures",
                                              "ledger", "render")},
}


def _modules() -> list[Path]:
    return sorted([*PACKAGE.glob("drill/*.py"), *PACKAGE.glob("drill/runbook/*.py"),
                   *PACKAGE.glob("report/*.py")])


def _name(path: Path) -> str:
    """`drill.faults`, `drill.runbook` (a package's __init__), `drill.runbook.steps`."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[tuple[str, ast.stmt]]:
    out: list[tuple[str, ast.stmt]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(f"{node.module}.{a.name}", node) for a in node.names]
    return out


def _in_function(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside a function body."""
    lines: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines |= {n.lineno for n in ast.walk(fn) if isinstance(n, (ast.Import,
                                                                        ast.ImportFrom))}
    return lines


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_at_the_top_and_point_one_way(path: Path) -> None:
    text = path.read_text()
    tree = ast.parse(text)
    source = text.splitlines()
    for lineno in _in_function(tree):
        line = source[lineno - 1]
        assert "# lazy:" in line and "labctl" not in line, f"{path}:{lineno}: {line.strip()}"
    assert "TYPE_CHECKING" not in text, path
    name = _name(path)
    forbidden = FORBIDDEN.get(name, ("labctl.report", "labctl.cli") if name.startswith(
        "drill") else ("labctl.cli",))
    for imported, node in _imports(tree):
        bad = [f for f in forbidden if imported == f or imported.startswith(f + ".")]
        assert not bad, f"{path}:{node.lineno}: imports {imported}"


def test_every_module_has_its_rule() -> None:
    names = {_name(p) for p in _modules() if p.stem != "__init__" or p.parent.name == "runbook"}
    assert names == set(FORBIDDEN)
