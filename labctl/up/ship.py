"""Ship the engine to hosts as one zipapp: build it deterministically, upload it, check its hash.

`build_engine()` (local, pure file work) makes `labctl-engine-<sha12>.pyz` in a cache directory:
the same sources always give the same bytes (sorted entries, fixed timestamps, no bytecode), so
the sha256 identifies the engine version. `ship()` puts it at
`<state_dir>/<lab>/<host>/labctl-engine.pyz` and skips the upload when the remote hash matches.
Nothing is pip-installed on hosts: `python3 labctl-engine.pyz tcpcopy ...` is all they need; the
engine keeps its compiled modules next to it, in `.labctl-engine-cache/` (engine.bytecache).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipapp
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import engine
from labctl.errors import RemoteError
from labctl.transport.base import Result, Transport
from labctl.transport.batch import run_chain
from labctl.transport.textfile import temp_path, write_argv, write_text

PYZ_NAME = "labctl-engine.pyz"
INTERPRETER = "/usr/bin/env python3"
#: Zip timestamps are fixed so the archive bytes depend only on the sources.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
#: The zipapp's entry: the engine's bytecode cache first (engine.bytecache: Python writes no
#: bytecode for a zip, so every start compiled the engine), keyed by the build id (`build_id`),
#: then the tool asked for.
MAIN_PY = ("import os, sys\nfrom engine.bytecache import install\n"
           "install(os.path.dirname(os.path.abspath(__file__)), {build!r})\n"
           "from engine.__main__ import main\nsys.exit(main())\n")


def build_id(files: list[tuple[str, bytes]]) -> str:
    """The engine's build id: 16 hex digits of a sha256 over its files' names and bytes."""
    h = hashlib.sha256()
    for name, data in files:
        h.update(b"%d:%s\0%d:" % (len(name), name.encode(), len(data)) + data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class EngineArtifact:
    """A built zipapp on the operator's machine."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class ShipOutcome:
    """What `ship` did on one host."""

    host: str
    remote_path: str
    sha256: str
    uploaded: bool

    @property
    def summary(self) -> str:
        verb = "uploaded" if self.uploaded else "already there (hash matches)"
        return f"{self.remote_path} {verb}, sha256 {self.sha256[:12]}"


def engine_source_dir() -> Path:
    """The `engine/` package directory (works for editable installs, where __file__ is None)."""
    for entry in [*getattr(engine, "__path__", []), str(Path(__file__).parents[2] / "engine")]:
        path = Path(entry)
        if (path / "__main__.py").is_file():
            return path.resolve()
    raise RuntimeError("cannot find the engine package sources")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labctl"


def engine_files(source: Path) -> list[tuple[str, bytes]]:
    """(archive name, bytes) of every engine source file, sorted; no caches, no bytecode."""
    files = []
    for path in sorted(source.rglob("*.py")):
        rel = path.relative_to(source)
        if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
            continue
        files.append((str(PurePosixPath("engine", *rel.parts)), path.read_bytes()))
    return files


def zip_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """A deterministic zip (no shebang yet) holding `files` plus a root `__main__.py`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        main = MAIN_PY.format(build=build_id(files)).encode()
        for name, data in [("__main__.py", main), *files]:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def pyz_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """The zipapp bytes: interpreter line + the deterministic zip (via the `zipapp` module)."""
    out = io.BytesIO()
    zipapp.create_archive(io.BytesIO(zip_bytes(files)), out, interpreter=INTERPRETER)
    return out.getvalue()


def build_engine(source: Optional[Path] = None, cache_dir: Optional[Path] = None) -> EngineArtifact:
    """Build (or reuse) the cached zipapp of `engine/`; returns its path and sha256."""
    data = pyz_bytes(engine_files(source or engine_source_dir()))
    digest = hashlib.sha256(data).hexdigest()
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"labctl-engine-{digest[:12]}.pyz"
    if not path.exists() or sha256_file(path) != digest:
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".pyz-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return EngineArtifact(path=path, sha256=digest)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remote_pyz(host_dir: str) -> str:
    return str(PurePosixPath(host_dir) / PYZ_NAME)


def parse_sha256sum(stdout: str) -> Optional[str]:
    """The hash from `sha256sum FILE` output, or None when it is not one."""
    word = stdout.split()[0].lower() if stdout.split() else ""
    return word if len(word) == 64 and all(c in "0123456789abcdef" for c in word) else None


def remote_sha256(transport: Transport, path: str, sudo: bool = True) -> Optional[str]:
    res = transport.run(["sha256sum", path], sudo=sudo)
    return parse_sha256sum(res.stdout) if res.ok else None


def ship(
    transport: Transport, artifact: EngineArtifact, host_dir: str, sudo: bool = True,
    hashed: Optional[Result] = None,
) -> ShipOutcome:
    """Make `<host_dir>/labctl-engine.pyz` hold exactly `artifact`; upload only when needed.
    `hashed`: the `sha256sum` of the remote zipapp, already run."""
    target = remote_pyz(host_dir)
    have = parse_sha256sum(hashed.stdout) if hashed is not None and hashed.ok else \
        remote_sha256(transport, target, sudo) if hashed is None else None
    if have == artifact.sha256:
        return ShipOutcome(transport.host, target, artifact.sha256, uploaded=False)
    transport.run(["mkdir", "-p", host_dir], sudo=sudo).check()
    tmp = f"{target}.upload-{os.getpid()}"
    transport.put(str(artifact.path), tmp, mode=0o755)
    got = remote_sha256(transport, tmp, sudo)
    if got != artifact.sha256:
        transport.run(["rm", "-f", tmp], sudo=sudo)
        raise RemoteError(
            f"uploaded engine has sha256 {got}, expected {artifact.sha256}",
            hint="the upload was corrupted or the disk is full; run `labctl up` again",
            host=transport.host,
        )
    transport.run(["mv", "-f", tmp, target], sudo=sudo).check()
    return ShipOutcome(transport.host, target, artifact.sha256, uploaded=True)


def ship_host(transport: Transport, artifact: EngineArtifact, host_dir: str,
              key: Optional[tuple[Path, str]] = None) -> ShipOutcome:
    """`ship`, and with `key` (local file, remote path) the channel key first: a text key in
    one command with the engine's hash (mode 600 from its first byte, one round trip); a
    binary one (an inventory's key file) over SFTP."""
    hashed = None
    if key is not None:
        try:
            text: Optional[str] = key[0].read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None:
            transport.put(str(key[0]), key[1], mode=0o600)
        else:
            got = run_chain(transport, [write_argv(temp_path(key[1]), key[1]),
                                        ["sha256sum", remote_pyz(host_dir)]], stdin=text)
            if got is None:
                write_text(transport, key[1], text, sudo=True).check()
            else:
                got[0].check()
                hashed = got[1] if len(got) > 1 else None
    return ship(transport, artifact, host_dir, sudo=True, hashed=hashed)
