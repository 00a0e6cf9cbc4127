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
from dataclasses import replace
from typing import Optional

from labctl.transport.base import TIMEOUT_EXIT, Result, Transport

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


#: A chain: the same framing, but it stops after the first command that fails (the rest are
#: not run, so their frames are missing), and the command at index `$2` reads the chain's stdin
#: (-1: none does). "Write the journal, then make the change" in one round trip: the change
#: never runs unless the journal was written.
CHAIN_SCRIPT = r"""tok=$1; at=$2; shift 2
e=$(mktemp) || exit 125
trap 'rm -f "$e"' EXIT
k=0
while [ $# -gt 0 ]; do
  n=$1; shift; cmd=; i=1
  while [ "$i" -le "$n" ]; do cmd="$cmd \"\${$i}\""; i=$((i+1)); done
  printf '%s out\n' "$tok"
  if [ "$k" = "$at" ]; then eval "$cmd" 2>"$e"; else eval "$cmd" 2>"$e" </dev/null; fi
  rc=$?
  printf '\n%s err %s\n' "$tok" "$rc"
  cat "$e"
  printf '\n%s end\n' "$tok"
  [ "$rc" -eq 0 ] || exit 0
  shift "$n"; k=$((k+1))
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


def chain_argv(argvs: Sequence[Sequence[str]], token: str, stdin_at: int = -1) -> list[str]:
    """The one argv that runs argvs in order until one fails (pure); `stdin_at`: the index of
    the argv that reads the chain's stdin."""
    return ["sh", "-c", CHAIN_SCRIPT, "sh", token, str(stdin_at),
            *batch_argv(argvs, token)[5:]]


def unchain_argv(argv: Sequence[str]) -> Optional[tuple[str, int, list[tuple[str, ...]]]]:
    """(token, stdin_at, argvs) when `argv` is a chain, else None (pure; FakeTransport)."""
    if len(argv) < 6 or tuple(argv[:4]) != ("sh", "-c", CHAIN_SCRIPT, "sh"):
        return None
    rest = unbatch_argv(["sh", "-c", SCRIPT, "sh", argv[4], *argv[6:]])
    return None if rest is None else (rest[0], int(argv[5]), rest[1])


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


def split(result: Result, argvs: Sequence[Sequence[str]], token: str,
          prefix: bool = False) -> Optional[list[Result]]:
    """One Result per argv from a batch's output; None when it is not a complete batch
    (`prefix`: a chain's output, the results of the argvs it ran, at least one)."""
    text = result.stdout
    if prefix:
        return _split_prefix(result, argvs, token)
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


def _split_prefix(result: Result, argvs: Sequence[Sequence[str]], token: str
                  ) -> Optional[list[Result]]:
    """A chain's results; a chain cut by its timeout: the whole frames, then the argv it was
    running, timed out (never None then: some of it ran)."""
    end = f"\n{token} end\n"
    cut = result.stdout.rfind(end)
    whole = result.stdout[:cut + len(end)] if cut >= 0 else ""
    count = whole.count(end)
    out = split(replace(result, stdout=whole), argvs[:count], token) if count else []
    if out is None or (not result.timed_out and (not out or whole != result.stdout)):
        return None
    if result.timed_out and count < len(argvs):
        out.append(Result(result.host, tuple(argvs[count]), TIMEOUT_EXIT, "",
                          result.stderr.strip().splitlines()[-1] if result.stderr.strip()
                          else "timed out"))
    return out


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


def run_chain(transport: Transport, argvs: Sequence[Sequence[str]], *, stdin: Optional[str] = None,
              stdin_at: int = 0, sudo: bool = True, timeout: Optional[float] = None
              ) -> Optional[list[Result]]:
    """Run argvs in order in one round trip, stopping after the first that fails: the results
    of those that ran (the last one failed if fewer than argvs). `stdin` goes to
    `argvs[stdin_at]`. None when the host could not run it as a chain (nothing ran: callers
    then run the argvs one by one). Raises like `Transport.run` on a lost link."""
    token = new_token()
    at = stdin_at if stdin is not None else -1
    if transport.wants_sudo(sudo):
        inner = [[*SUDO_PREFIX, *argv] for argv in argvs]
        res = transport.run(chain_argv(inner, token, at), sudo=False, timeout=timeout,
                            stdin=stdin)
    else:
        res = transport.run(chain_argv(argvs, token, at), sudo=sudo, timeout=timeout,
                            stdin=stdin)
    return split(res, argvs, token, prefix=True)
