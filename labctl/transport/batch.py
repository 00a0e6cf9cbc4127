"""Several argvs in one round trip: `sh -c SCRIPT sh TOKEN N1 ARGV1... N2 ARGV2...`.

SCRIPT is a constant; the argvs travel as positional parameters (argv, never a formatted
shell string: the only `eval` builds `"${1}" "${2}" ...` references, not values). For each
command it prints `TOKEN out`, the command's stdout, `\\nTOKEN err RC`, its stderr, and
`\\nTOKEN end`, so `split` gives back one `Result` per argv, byte for byte, as if each had been
run alone (exit 127 when the tool is missing, as with a single command).

    argv = batch_argv(argvs, token)         # pure
    results = split(result, argvs, token)   # pure; None if the output is not a whole batch
    frame(results, token)                   # pure: what a host prints (FakeTransport uses it)

On a host where commands go through sudo (`transport.wants_sudo`), each argv inside the batch
is run as `sudo -n -- ARGV` and the `sh` around them as the login user: the sudo rights a host
needs are the programs labctl runs, never a shell.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Optional

from labctl.transport.base import Result, Transport

SCRIPT = r"""tok=$1; shift
e=$(mktemp) || exit 125
trap 'rm -f "$e"' EXIT
while [ $# -gt 0 ]; do
  n=$1; shift; cmd=; i=1
  while [ "$i" -le "$n" ]; do cmd="$cmd \"\${$i}\""; i=$((i+1)); done
  printf '%s out\n' "$tok"
  eval "$cmd" 2>"$e" </dev/null
  rc=$?
  printf '\n%s err %s\n' "$tok" "$rc"
  cat "$e"
  printf '\n%s end\n' "$tok"
  shift "$n"
done
"""


#: How one privileged argv runs on a sudo host (labctl.transport.ssh uses the same words).
SUDO_PREFIX = ("sudo", "-n", "--")


def new_token() -> str:
    return "labctl-" + secrets.token_hex(8)


def batch_argv(argvs: Sequence[Sequence[str]], token: str) -> list[str]:
    """The one argv that runs every argv in order on the host (pure)."""
    out = ["sh", "-c", SCRIPT, "sh", token]
    for argv in argvs:
        if not argv:
            raise ValueError("empty argv in a batch")
        out += [str(len(argv)), *argv]
    return out


def unbatch_argv(argv: Sequence[str]) -> Optional[tuple[str, list[tuple[str, ...]]]]:
    """(token, argvs) when `argv` is a batch, else None (pure; the fake transport uses it)."""
    if len(argv) < 5 or tuple(argv[:4]) != ("sh", "-c", SCRIPT, "sh"):
        return None
    token, rest, argvs = argv[4], list(argv[5:]), []
    while rest:
        n = int(rest[0])
        argvs.append(tuple(rest[1:1 + n]))
        rest = rest[1 + n:]
    return token, argvs


def frame(results: Sequence[Result], token: str) -> str:
    """What the host prints for these results (pure; inverse of `split`)."""
    return "".join(f"{token} out\n{r.stdout}\n{token} err {r.exit_code}\n{r.stderr}\n{token} end\n"
                   for r in results)


def split(result: Result, argvs: Sequence[Sequence[str]], token: str) -> Optional[list[Result]]:
    """One Result per argv from a batch's output; None when it is not a complete batch."""
    text = result.stdout
    out: list[Result] = []
    for argv in argvs:
        head = f"{token} out\n"
        if not text.startswith(head):
            return None
        text = text[len(head):]
        mid = text.find(f"\n{token} err ")
        if mid < 0:
            return None
        stdout, text = text[:mid], text[mid + 1:]
        line, _, text = text.partition("\n")
        code = line.rsplit(" ", 1)[-1]
        end = text.find(f"\n{token} end\n")
        if not code.isdigit() or end < 0:
            return None
        stderr, text = text[:end], text[end + len(f"\n{token} end\n"):]
        out.append(Result(result.host, tuple(argv), int(code), stdout, stderr))
    return out if not text.strip() else None


def run_batch(transport: Transport, argvs: Sequence[Sequence[str]], *, sudo: bool = True,
              timeout: Optional[float] = None) -> Optional[list[Result]]:
    """Run every argv in one round trip; None when the host could not run it as a batch
    (callers then run the argvs one by one). Raises like `Transport.run` on a lost link.
    Privileged by default like `Transport.run`; through sudo each argv is prefixed inside."""
    token = new_token()
    if transport.wants_sudo(sudo):
        inner = [[*SUDO_PREFIX, *argv] for argv in argvs]
        res = transport.run(batch_argv(inner, token), sudo=False, timeout=timeout)
    else:
        res = transport.run(batch_argv(argvs, token), sudo=sudo, timeout=timeout)
    return split(res, argvs, token)
