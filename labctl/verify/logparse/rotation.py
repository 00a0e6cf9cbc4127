"""Reading a log that may have been rotated since the last read: which bytes to read (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class FileState:
    """What we know of a log file on a host: its size and inode (None if unknown/absent)."""

    path: str
    size: int
    inode: Optional[int] = None


@dataclass(frozen=True)
class ReadSpec:
    """Read `path` from byte `start` to its end."""

    path: str
    start: int
    reason: str


def plan_reads(offset: int, current: FileState, rotated: Optional[FileState] = None,
               inode_at_offset: Optional[int] = None) -> list[ReadSpec]:
    """Which bytes hold the lines written since `offset` was recorded in `current.path`.

    - Same file (inode unchanged or unknown) and not shorter: read it from `offset`.
    - Rotated (inode changed, or the file shrank): the old file is now `rotated` (`.1`): read its
      tail from `offset` when it is the same file (or at least that long), then the new file
      from 0. Without a usable `.1`, the new file from 0 — the lines in between are gone.
    """
    same_inode = inode_at_offset is None or current.inode is None or \
        current.inode == inode_at_offset
    if same_inode and current.size >= offset:
        return [ReadSpec(current.path, offset, "new bytes since offset")]
    reads: list[ReadSpec] = []
    if rotated is not None and _is_old_file(rotated, offset, inode_at_offset):
        reads.append(ReadSpec(rotated.path, offset, "rest of the rotated log"))
    reads.append(ReadSpec(current.path, 0, "log rotated: new file from its start"))
    return reads


def _is_old_file(rotated: FileState, offset: int, inode: Optional[int]) -> bool:
    if inode is not None and rotated.inode is not None:
        return rotated.inode == inode
    return rotated.size >= offset
