"""The engine runs unchanged under PyPy 3.9: its unit tests pass in the pypy venv that
scripts/install.sh builds (`.venv-pypy`, pypy3 from apt with pytest + hypothesis from pip).

The engine's unit tests are the tests/unit modules that import the engine and nothing of
labctl (nor a third-party package other than pytest and hypothesis), directly or through the
tests/unit helpers they import. ENGINE_TESTS lists them explicitly; a test keeps the list equal
to that rule, so a new engine test module cannot silently stay out of the PyPy run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
ENGINE = ROOT / "engine"
#: The checkout's own .venv-pypy, else the one next to the venv running this test (a git
#: worktree tested with the main checkout's .venv uses the main checkout's .venv-pypy).
CANDIDATES = (ROOT / ".venv-pypy", Path(sys.prefix).parent / ".venv-pypy")
INSTALL = "run `bash scripts/install.sh` (it installs pypy3 and builds .venv-pypy)"

ENGINE_TESTS = (
    "test_bpf", "test_bytecache", "test_deadman_rollback", "test_header", "test_http_framer",
    "test_http_select",
    "test_http_stream", "test_loop", "test_netem", "test_offline", "test_options",
    "test_packets", "test_protocol", "test_pypy_gc", "test_rawsock_sysfs", "test_router",
    "test_router_evict",
    "test_router_options", "test_router_stats", "test_sampling", "test_session",
    "test_session_hold", "test_session_memory", "test_session_pacing", "test_session_rst",
    "test_session_stall", "test_session_table", "test_session_gap", "test_session_join",
    "test_session_select", "test_session_targets", "test_sesspkt", "test_tcpcopy_dispatch",
    "test_tcpcopy_reconnect", "test_workers", "test_metrics", "test_ring", "test_slots",
    "test_supervise",
)
#: Fewer passed tests than this means the run did not really happen (326 when written).
MIN_PASSED = 300
#: Third-party packages the pypy venv has (everything else would need labctl's venv).
PYPY_PACKAGES = {"pytest", "hypothesis", "_pytest"}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (dotted names; `from a import b` counts as `a` and `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _closure(module: str) -> set[str]:
    """What a tests/unit module imports, through the tests/unit modules it imports."""
    seen: set[str] = set()
    todo, out = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in _imports(UNIT / f"{name}.py"):
            out.add(imported)
            parts = imported.split(".")
            if parts[:2] == ["tests", "unit"] and len(parts) == 3 \
                    and (UNIT / f"{parts[2]}.py").exists():
                todo.append(parts[2])
    return out


def engine_only(module: str) -> bool:
    tops = {name.split(".")[0] for name in _closure(module)}
    third_party = tops - set(sys.stdlib_module_names) - {"engine", "tests", "__future__"}
    return "engine" in tops and not third_party - PYPY_PACKAGES


def test_the_pypy_set_is_every_engine_only_unit_test_module() -> None:
    modules = sorted(p.stem for p in UNIT.glob("test_*.py"))
    want = {m for m in modules if engine_only(m)}
    assert want, "no engine unit test found: the rule is broken"
    missing, extra = sorted(want - set(ENGINE_TESTS)), sorted(set(ENGINE_TESTS) - want)
    assert not missing, f"engine-only unit tests missing from ENGINE_TESTS: {missing}"
    assert not extra, f"ENGINE_TESTS lists modules that are not engine-only: {extra}"


def test_labctl_tests_are_not_engine_only() -> None:
    """The rule itself: a module importing labctl, directly or through a helper, is out."""
    assert not engine_only("test_select_inventory")  # engine.options and labctl
    assert not engine_only("test_engine_pypy")       # imports no engine at all
    assert engine_only("test_session_rst")   # engine, through tests.unit.session_transcript


def _pypy() -> Path:
    for venv in CANDIDATES:
        if (venv / "bin" / "python").exists():
            return venv / "bin" / "python"
    pytest.fail(f"no pypy venv ({', '.join(map(str, dict.fromkeys(CANDIDATES)))}): {INSTALL}",
                pytrace=False)


def _run_pypy(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([str(_pypy()), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _stdlib_names_used_by_the_engine() -> list[tuple[str, str]]:
    """(module, name) for every `mod.name` and `from mod import name` of a stdlib module in
    engine/ (what the engine needs the interpreter's standard library to have)."""
    used: set[tuple[str, str]] = set()
    stdlib = set(sys.stdlib_module_names)
    for path in sorted(ENGINE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        local: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in stdlib:
                        local[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] in stdlib and node.module != "__future__":
                used.update((node.module, alias.name) for alias in node.names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in local:
                used.add((local[node.value.id], node.attr))
    return sorted(used)


PROBE = """
import importlib, json, sys
missing = []
for module, name in json.loads(sys.stdin.read()):
    if not hasattr(importlib.import_module(module), name):
        missing.append(module + "." + name)
print(json.dumps(missing))
"""


def test_every_stdlib_name_the_engine_uses_exists_under_pypy3() -> None:
    """A static net over the paths unit tests do not reach (socket.if_nameindex was one):
    every stdlib attribute the engine names that this CPython has, PyPy has too."""
    used = [(m, n) for m, n in _stdlib_names_used_by_the_engine()
            if hasattr(__import__(m, fromlist=["_"]), n)]
    assert len(used) > 50, used  # the scan found the engine's socket/os/struct/... calls
    proc = subprocess.run([str(_pypy()), "-c", PROBE], input=json.dumps(used),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], "missing under PyPy 3.9"


def test_engine_unit_tests_pass_under_pypy3() -> None:
    impl = _run_pypy(["-c", "import platform, sys; print(platform.python_implementation(), "
                      "*sys.version_info[:2])"], timeout=60)
    assert impl.stdout.split() == ["PyPy", "3", "9"], \
        f"{_pypy()} is not PyPy 3.9 ({impl.stdout.strip()}{impl.stderr.strip()}): {INSTALL}"
    files = [str(UNIT / f"{m}.py") for m in ENGINE_TESTS]
    proc = _run_pypy(["-m", "pytest", "-q", "-p", "no:cacheprovider", *files], timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    assert proc.returncode == 0, f"engine unit tests failed under pypy3:\n{tail}"
    m = re.search(r"(\d+) passed", proc.stdout)
    assert m and int(m.group(1)) >= MIN_PASSED, f"too few tests ran under pypy3:\n{tail}"
    assert not re.search(r"\d+ (failed|error)", proc.stdout), tail
