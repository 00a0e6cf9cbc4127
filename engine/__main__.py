"""`python -m engine tcpcopy ...` / `python -m engine intercept ...` (also how the zipapp runs)."""

from __future__ import annotations

import sys

from engine.pypygc import ensure_gc_settings


def main() -> int:
    usage = "usage: python -m engine {tcpcopy|intercept} [flags]"
    if len(sys.argv) >= 2 and sys.argv[1] == "rollback":  # labctl's dead-man timer on a host
        from engine.rollback import main as rollback  # lazy: load only the tool asked for

        return rollback(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "detach":  # labctl starts daemons with it
        from engine.rollback import spawn_main  # lazy: load only the tool asked for

        return spawn_main(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "supervise":  # engine.supervise (hot backup)
        from engine.supervise import main as supervise  # lazy: load only the tool asked for

        return supervise(sys.argv[2:])
    if len(sys.argv) < 2 or sys.argv[1] not in ("tcpcopy", "intercept"):
        print(usage, file=sys.stderr)
        return 2
    tool, args = sys.argv[1], sys.argv[2:]
    ensure_gc_settings()        # under PyPy: a small nursery (may exec this command again)
    if tool == "tcpcopy":
        from engine.tcpcopy import main as tcpcopy  # lazy: load only the tool asked for

        return tcpcopy(args)
    from engine.intercept import main as intercept  # lazy: load only the tool asked for

    return intercept(args)


if __name__ == "__main__":
    sys.exit(main())
