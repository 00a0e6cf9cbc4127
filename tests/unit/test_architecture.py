"""The house rules of the code, checked on every run (see docs/architecture.md):

- no import cycles in `labctl` or `engine`, counting every import (module level, inside
  functions, under TYPE_CHECKING): a cycle says the cut between modules is wrong;
- an import inside a function says why on its line (`# lazy: <reason>`): a heavy optional
  dependency (paramiko, scapy, pyroute2) or the module that wraps one;
- `engine` never imports `labctl` (it ships alone, standard library only);
- `labctl.cli` is the only package that imports typer or rich;
- each labctl package's `__init__` docstring has a `May import:` line, and the package imports
  no other labctl package than the ones listed there.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("labctl", "engine")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (labctl/engine: the module, else the top-level name)
    line: int
    lazy: bool  # inside a function
    text: str  # the source line


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_pkg: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
            for a in node.names]


def _imports(module: str, path: Path) -> list[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(module, node, path.name == "__init__.py"):
                out.append(Import(module, target, node.lineno, lazy, lines[node.lineno - 1]))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(text), False)
    return out


ALL = [imp for mod, path in MODULES.items() for imp in _imports(mod, path)]


def _internal(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def _cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in ALL:
        if imp.target in MODULES and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_checker_sees_the_code() -> None:
    assert len(MODULES) > 60 and "labctl.up.run" in MODULES and "engine.tcpcopy" in MODULES
    assert any(i.source == "labctl.up.run" and i.target == "labctl.up.execute" for i in ALL)


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_function_level_imports_say_why() -> None:
    bad = [f"{i.source}:{i.line}: {i.text.strip()}" for i in ALL
           if i.lazy and "# lazy:" not in i.text]
    assert bad == []


def test_engine_never_imports_labctl() -> None:
    assert [i for i in ALL if i.source.startswith("engine") and
            i.target.startswith("labctl")] == []


def test_only_cli_imports_typer_and_rich() -> None:
    bad = [f"{i.source}:{i.line}" for i in ALL if i.target.split(".")[0] in ("typer", "rich")
           and not i.source.startswith("labctl.cli")]
    assert bad == []


def _package(module: str) -> str:
    """The labctl package a module belongs to: labctl.up.run -> labctl.up; top-level modules
    (labctl.errors, labctl.model, labctl.demo) are their own unit."""
    parts = module.split(".")
    if len(parts) >= 2 and f"labctl.{parts[1]}" in MODULES and \
            MODULES[f"labctl.{parts[1]}"].name == "__init__.py":
        return f"labctl.{parts[1]}"
    return ".".join(parts[:2])


PACKAGE_NAMES = sorted(m for m, p in MODULES.items()
                       if m.startswith("labctl.") and m.count(".") == 1 and p.name == "__init__.py")


def allowed(package: str) -> set[str]:
    """The labctl packages named in the `May import:` paragraph of the package's docstring,
    before any "Never" (what follows it is forbidden); "every labctl package" allows all."""
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8"))) or ""
    match = re.search(r"^May import:(.*?)(?:\n\s*\n|\Z)", doc, re.M | re.S)
    if match is None:
        raise AssertionError(f"{package}/__init__.py: no 'May import:' line in its docstring")
    text = re.split(r"\bNever\b", match.group(1))[0]
    if "every labctl package" in text:
        return {_package(m) for m in MODULES if m.startswith("labctl.")}
    return {_package(name) for name in re.findall(r"labctl(?:\.[a-z_]+)+", text)}


@pytest.mark.parametrize("package", PACKAGE_NAMES)
def test_packages_import_only_what_their_docstring_allows(package: str) -> None:
    may = allowed(package)
    used = {_package(i.target) for i in ALL if _package(i.source) == package
            and i.target.startswith("labctl") and _package(i.target) != package}
    assert used - may == set(), f"{package} imports {sorted(used - may)} (allowed: {sorted(may)})"
