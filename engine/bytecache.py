"""A bytecode cache for the engine's zipapp (stdlib only, CPython 3.9+ and PyPy).

Python never writes bytecode for modules it imports from a zip, so every start of a daemon
from `labctl-engine.pyz` compiled the whole engine again: ~0.3 s of CPU under CPython and
~0.7 s under PyPy, per start (an 18-host `up` starts 17 daemons and 17 `detach` helpers on
the hosts; a supervised daemon pays it again on every restart). `install(pyz)` puts a finder
first on `sys.meta_path` for `engine` and its submodules that loads the code objects from
`<dir of pyz>/.labctl-engine-cache/<key>/<module>.pyc` and, on a miss, compiles the source from
the zip and writes that file (atomically: a temporary file, then a rename), so the next start
of any tool on that host and interpreter only unmarshals.

`<key>` is the interpreter's cache tag (`cpython-311`, `pypy39`) and the engine's build id, a
hash of its files that labctl.up.ship writes into the zipapp's `__main__.py` (hashing the pyz
at each start would import hashlib, which under PyPy loads OpenSSL: ~0.08 s of CPU per start):
a new engine never runs old code, and older engines' directories are
removed when a new one is made (another interpreter's of the same engine stays: `detach` runs
under python3, the daemon maybe under pypy3). A cache file that does not start with this
interpreter's magic number, or does not unmarshal, is compiled again. Any error of the cache
itself (a read-only or full filesystem) only costs the compile: the module is then loaded as
zipimport would.
Tracebacks name `<pyz>/engine/<module>.py`, as zipimport's do.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import marshal
import os
import sys
import zipimport

# importlib.util's own MAGIC_NUMBER: importlib.util (and importlib.abc, which a finder needs
# not subclass) cost ~0.045 s of CPU to import under PyPy, at every start
from importlib._bootstrap_external import MAGIC_NUMBER
from types import CodeType, ModuleType
from typing import Optional, Sequence

CACHE_DIR = ".labctl-engine-cache"
PACKAGE = "engine"


def cache_key(build: str) -> str:
    """This interpreter's cache tag and the engine's build id (ValueError: not a hex id)."""
    if not 8 <= len(build) <= 64 or build.strip("0123456789abcdef"):
        raise ValueError(f"not an engine build id: {build!r}")
    tag = sys.implementation.cache_tag or sys.implementation.name
    return f"{tag}-{build}"


class ZipBytecodeFinder:
    """Finds `engine` and `engine.*` in the zip; loads them through the cache directory (a
    meta path finder and loader by their methods, `find_spec` / `create_module` /
    `exec_module`)."""

    def __init__(self, pyz: str, cache: str) -> None:
        self.pyz = pyz
        self.cache = cache
        self.zip = zipimport.zipimporter(pyz)
        self.hits = 0
        self.misses = 0

    def _source_name(self, fullname: str) -> Optional[tuple[str, bool]]:
        base = fullname.replace(".", "/")
        for name, package in ((f"{base}/__init__.py", True), (f"{base}.py", False)):
            try:
                self.zip.get_data(name)
            except OSError:
                continue
            return name, package
        return None

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        found = self._source_name(fullname)
        if found is None:
            return None
        name, package = found
        origin = os.path.join(self.pyz, name)
        spec = importlib.machinery.ModuleSpec(   # a Loader by its methods, not its ABC
            fullname, self, origin=origin, is_package=package)  # type: ignore[arg-type]
        spec.has_location = True
        if package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return None                     # the default module object

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None and spec.origin is not None
        code = self.code_of(spec.name, spec.origin)
        exec(code, module.__dict__)

    def code_of(self, fullname: str, origin: str) -> CodeType:
        path = os.path.join(self.cache, fullname + ".pyc")
        magic = MAGIC_NUMBER
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if data[:len(magic)] == magic:
                code = marshal.loads(data[len(magic):])
                if isinstance(code, CodeType):
                    self.hits += 1
                    return code
        except (OSError, ValueError, EOFError, TypeError):
            pass
        self.misses += 1
        name = os.path.relpath(origin, self.pyz).replace(os.sep, "/")
        code = compile(self.zip.get_data(name), origin, "exec", dont_inherit=True)
        _write(path, magic + marshal.dumps(code))
        return code


def _write(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically; a failure only means no cache."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _prepare(root: str, key: str) -> Optional[str]:
    """The cache directory for `key` under `root` (made 0700; the directories of other
    engine hashes removed), or None."""
    path = os.path.join(root, key)
    if os.path.isdir(path):
        return path
    try:
        for new in (root, path):
            if not os.path.isdir(new):
                os.mkdir(new, 0o700)
    except OSError:
        return None
    digest = key.rsplit("-", 1)[-1]
    try:            # older engines' caches; other interpreters' of this engine stay
        for other in os.listdir(root):
            if other.rsplit("-", 1)[-1] != digest:
                _remove_tree(os.path.join(root, other))
    except OSError:
        pass
    return path


def _remove_tree(path: str) -> None:
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        pass


def install(pyz: str, build: str) -> Optional[ZipBytecodeFinder]:
    """Put the caching finder first on sys.meta_path for the engine in `pyz` (a zip file)
    of build `build`; None (nothing changed) when `pyz` is no zip, `build` no build id or the
    cache directory cannot be made."""
    try:
        key = cache_key(build)
        finder = ZipBytecodeFinder(pyz, "")
    except (OSError, ValueError, zipimport.ZipImportError):
        return None
    cache = _prepare(os.path.join(os.path.dirname(os.path.abspath(pyz)), CACHE_DIR), key)
    if cache is None:
        return None
    finder.cache = cache
    sys.meta_path.insert(0, finder)
    return finder
