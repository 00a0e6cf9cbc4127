"""Owner and mode of labctl's own directories on a host (`stat`), for the state_dir check."""

from __future__ import annotations

from dataclasses import dataclass

from labctl.facts.base import NOT_FOUND, Fact, FactParseError
from labctl.transport.base import Result

#: `stat -L -c FORMAT PATH...`: one line per existing path; the name last (it may hold spaces).
STAT_FORMAT = "%u %U %a %F|%n"
_MISSING = "No such file or directory"


@dataclass(frozen=True)
class PathStat:
    """One existing path: its owner (uid and name), permission bits, and file type."""

    path: str
    uid: int
    owner: str
    mode: int
    kind: str  # `directory`, `regular file`, ...

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"


def parse_stats(result: Result) -> tuple[PathStat, ...]:
    """The paths that exist (a missing one prints nothing: stat exits 1 saying so)."""
    if result.exit_code == NOT_FOUND:
        raise FactParseError("stat not found on the host")
    other = [line for line in result.stderr.strip().splitlines() if _MISSING not in line]
    if not result.ok and other:
        raise FactParseError(f"exited {result.exit_code}: {other[-1]}")
    out = []
    for line in result.stdout.splitlines():
        head, sep, path = line.partition("|")
        words = head.split(" ", 3)
        if not sep or len(words) != 4 or not words[0].isdigit():
            raise FactParseError(f"unexpected stat line {line[:60]!r}")
        try:
            mode = int(words[2], 8)
        except ValueError:
            raise FactParseError(f"unexpected mode {words[2][:10]!r}") from None
        out.append(PathStat(path, int(words[0]), words[1], mode, words[3]))
    return tuple(out)


def state_dirs_fact(paths: tuple[str, ...]) -> Fact[tuple[PathStat, ...]]:
    """Owner and mode of each of `paths` that exists (run as root: labctl's dirs are 0700)."""
    return Fact("state_dirs", ("stat", "-L", "-c", STAT_FORMAT, *paths), parse_stats, sudo=True)
