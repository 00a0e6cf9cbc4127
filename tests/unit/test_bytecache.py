"""engine.bytecache: the engine zipapp compiles each module once per host and interpreter,
then loads it from `.labctl-engine-cache/` (also run under PyPy: ENGINE_TESTS)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional

import engine

ENGINE_DIR = Path(engine.__file__).resolve().parent

#: A zipapp entry that installs the cache, imports a daemon and reports the finder's counts.
MAIN = """import json, os, sys
from engine.bytecache import install
finder = install(os.path.dirname(os.path.abspath(__file__)), BUILD)
import engine.tcpcopy.cli
import engine.intercept
print(json.dumps({"installed": finder is not None,
                  "hits": finder.hits if finder else 0, "misses": finder.misses if finder else 0,
                  "file": engine.tcpcopy.cli.__file__}))
"""


def make_pyz(where: Path, extra: str = "", build: Optional[str] = None) -> Path:
    """A zipapp of this engine (plus `engine/_extra.py`) with a build id (by default a hash of
    its files, as labctl.up.ship makes it)."""
    where.mkdir(parents=True, exist_ok=True)
    pyz = where / "labctl-engine.pyz"
    files = [("engine/" + p.relative_to(ENGINE_DIR).as_posix(), p.read_bytes())
             for p in sorted(ENGINE_DIR.rglob("*.py")) if "__pycache__" not in p.parts]
    if extra:
        files.append(("engine/_extra.py", extra.encode()))
    with zipfile.ZipFile(pyz, "w") as zf:
        if build is None:
            build = hashlib.sha256(b"".join(n.encode() + d for n, d in files)).hexdigest()[:16]
        zf.writestr("__main__.py", MAIN.replace("BUILD", repr(build)))
        for name, data in files:
            zf.writestr(name, data)
    return pyz


def run(pyz: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, str(pyz)], capture_output=True, text=True,
                         timeout=120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_second_start_compiles_nothing(tmp_path: Path) -> None:
    pyz = make_pyz(tmp_path / "host")
    first = run(pyz)
    assert first["installed"] and first["hits"] == 0 and int(first["misses"]) > 10, first
    second = run(pyz)
    assert second["misses"] == 0 and second["hits"] == first["misses"], second
    assert second["file"] == os.path.join(str(pyz), "engine", "tcpcopy", "cli.py")
    root = tmp_path / "host" / ".labctl-engine-cache"
    [key] = os.listdir(root)
    assert key.startswith((sys.implementation.cache_tag or "") + "-")
    for d in (root, root / key):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    same_engine = root / ("otherpy-" + key.rsplit("-", 1)[-1])   # pypy3's, beside python3's
    same_engine.mkdir()
    run(pyz)
    assert same_engine.is_dir()


def test_a_corrupt_or_foreign_cache_file_is_compiled_again(tmp_path: Path) -> None:
    pyz = make_pyz(tmp_path / "host")
    first = run(pyz)
    root = tmp_path / "host" / ".labctl-engine-cache"
    cache = root / os.listdir(root)[0]
    (cache / "engine.tcpcopy.cli.pyc").write_bytes(b"garbage")
    (cache / "engine.intercept.pyc").write_bytes(b"\x00\x00\r\n" + b"x" * 40)   # other magic
    again = run(pyz)
    assert again["misses"] == 2 and again["hits"] == int(first["misses"]) - 2, again
    assert run(pyz)["misses"] == 0


def test_a_new_engine_gets_a_new_cache_and_the_old_one_goes(tmp_path: Path) -> None:
    host = tmp_path / "host"
    run(make_pyz(host))
    root = host / ".labctl-engine-cache"
    old = set(os.listdir(root))
    other_interpreter = root / ("otherpy-" + next(iter(old)).rsplit("-", 1)[-1])
    other_interpreter.mkdir()
    newer = run(make_pyz(host, extra="X = 1\n"))          # other bytes: another hash
    assert newer["hits"] == 0
    now = set(os.listdir(root))
    assert not (old & now) and len(now) == 1, (old, now)      # the old engine's caches gone


def test_an_unwritable_cache_costs_only_the_compile(tmp_path: Path) -> None:
    host = tmp_path / "host"
    pyz = make_pyz(host)
    (host / ".labctl-engine-cache").write_text("not a directory")
    got = run(pyz)
    assert got["installed"] is False and got["file"].endswith("cli.py")   # zipimport's way


def test_a_pyz_without_a_build_id_runs_without_the_cache(tmp_path: Path) -> None:
    got = run(make_pyz(tmp_path / "host", build="../x"))
    assert got["installed"] is False and not (tmp_path / "host" / ".labctl-engine-cache").exists()
