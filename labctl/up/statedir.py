"""labctl's state directory on each host: created 0700, and refused when someone else could
have planted or could change what is in it.

`<state_dir>/<lab>/<host>` holds the engine labctl runs as root, the channel key and the
journal whose undo commands `down` runs as root. A pre-created directory owned by another user
(not root, not the connecting user), or writable by its group or by everyone, would let that
user swap any of them: `state_dir.unsafe` is an ERROR naming the host, path, owner and mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

from labctl.facts import HostFacts, OperatorFacts
from labctl.inventory.models import Inventory
from labctl.model import Finding, Severity

#: Group- or world-writable.
WRITABLE_BY_OTHERS = 0o022


def mkdir_argv(hdir: str) -> list[str]:
    """Create state_dir, its lab dir and `hdir` (each that is missing) mode 0700."""
    lab_dir = PurePosixPath(hdir).parent
    return ["mkdir", "-p", "-m", "0700", str(lab_dir.parent), str(lab_dir), hdir]


def check_state_dir(inv: Inventory, facts: Mapping[str, HostFacts],
                    op: OperatorFacts) -> Iterable[Finding]:
    for spec in inv.all_hosts():
        hf = facts.get(spec.name)
        if hf is None or hf.unreachable is not None:
            continue
        if hf.state_dirs is None:
            why = hf.unknown.get("state_dirs", "not gathered")
            yield Finding("facts.unknown", Severity.WARN, spec.name,
                          f"could not check the owner and mode of state_dir: {why}",
                          hint="install the missing tool or grant access, then run again")
            continue
        fine = {0} | ({hf.uid} if hf.uid is not None else set())
        for st in hf.state_dirs:
            problems = []
            if st.kind != "directory":
                problems.append(f"is a {st.kind}, not a directory")
            if st.uid not in fine:
                problems.append(f"is owned by {st.owner} (uid {st.uid}), not root or "
                                f"{spec.user}")
            if st.mode & WRITABLE_BY_OTHERS:
                problems.append(f"has mode {st.mode_text} (writable by its group or by "
                                "everyone)")
            if problems:
                yield Finding(
                    "state_dir.unsafe", Severity.ERROR, spec.name,
                    f"{st.path} {' and '.join(problems)} (owner {st.owner}, mode "
                    f"{st.mode_text}): whoever can write there could swap the engine or the "
                    "journal labctl runs as root",
                    hint=f"remove it (labctl creates it 0700) or `chown root: {st.path}; "
                         f"chmod 0700 {st.path}`, or set state_dir to a directory of root's")
