"""The real `labctl` CLI with test hooks (labctl.up.hooks), for lab tests that must crash labctl
at a given step or let a route that cuts SSH through:

    python -m tests.integration.hooked_labctl --kill-after lock -- up inventory.yaml
    python -m tests.integration.hooked_labctl --allow-ssh-cut -- up inventory.yaml

Everything after `--` is labctl's own command line; the hooks reach `up` as an argument of
`labctl.cli.main`, never through the environment.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from labctl.cli import main
from labctl.up.hooks import Hooks, KillAfter


def hooks_from(args: argparse.Namespace) -> Hooks:
    if args.kill_after:
        return KillAfter(args.kill_after, allow_ssh_cut=args.allow_ssh_cut)
    return Hooks(allow_ssh_cut=args.allow_ssh_cut)


def run(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="hooked_labctl")
    parser.add_argument("--kill-after", default="", help="SIGKILL labctl right after this step")
    parser.add_argument("--allow-ssh-cut", action="store_true",
                        help="let the refusals that protect SSH through")
    args = parser.parse_args(argv[:split])
    return main(argv[split + 1:], hooks=hooks_from(args))


if __name__ == "__main__":
    sys.exit(run())
