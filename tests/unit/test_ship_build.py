"""labctl.up.ship: the engine zipapp is deterministic and runnable."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from labctl.up import ship


def _src(tmp: Path) -> Path:
    src = tmp / "engine"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "__main__.py").write_text(
        "import sys\n\ndef main() -> int:\n    print('engine', sys.argv[1:])\n    return 7\n"
    )
    (src / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    return src


def test_build_is_deterministic_and_cached(tmp_path: Path) -> None:
    src = _src(tmp_path)
    a = ship.build_engine(src, tmp_path / "cache1")
    (src / "__init__.py").touch()  # a new mtime must not change the bytes
    b = ship.build_engine(src, tmp_path / "cache2")
    assert a.sha256 == b.sha256 == ship.sha256_file(a.path)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(a.path).namelist()
    assert names == ["__main__.py", "engine/__init__.py", "engine/__main__.py"]


def test_content_change_changes_hash(tmp_path: Path) -> None:
    src = _src(tmp_path)
    a = ship.build_engine(src, tmp_path / "c")
    (src / "extra.py").write_text("X = 1\n")
    b = ship.build_engine(src, tmp_path / "c")
    assert b.sha256 != a.sha256
    # the build id the bytecode cache is keyed by (engine.bytecache) changed with it
    mains = [zipfile.ZipFile(x.path).read("__main__.py").decode() for x in (a, b)]
    ids = [ship.build_id(ship.engine_files(src))]
    assert repr(ids[0]) in mains[1] and repr(ids[0]) not in mains[0]


def test_zipapp_runs_engine_main(tmp_path: Path) -> None:
    art = ship.build_engine(_src(tmp_path), tmp_path / "c")
    out = subprocess.run([sys.executable, str(art.path), "tcpcopy", "-x"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 7 and "engine ['tcpcopy', '-x']" in out.stdout


def test_real_engine_zipapp_dispatches_rollback(tmp_path: Path) -> None:
    art = ship.build_engine(cache_dir=tmp_path / "c")
    out = subprocess.run([sys.executable, str(art.path), "rollback", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--confirm-file" in out.stdout


def test_parse_sha256sum() -> None:
    h = "ab" * 32
    assert ship.parse_sha256sum(f"{h}  /x/labctl-engine.pyz\n") == h
    assert ship.parse_sha256sum("sha256sum: /x: No such file or directory") is None
    assert ship.parse_sha256sum("") is None
