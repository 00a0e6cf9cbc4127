"""Preflight findings grouped for people (pure): one group per check and subject, listing the
hosts or addresses it applies to, instead of one finding per (host, thing) pair.

Two steps, both exact (nothing is guessed away):

1. Findings with the same severity, refusal, check id, message and hint become one group; its
   hosts are listed (`service.unreachable` from 16 online hosts to one target: one group).
2. Groups of one check with the same hosts and hint whose messages differ in exactly one run of
   words become one group whose message lists those words (`... contains inventory host
   online1 (10.0.0.1), online2 (10.0.0.2)`, `... the target service 10.0.0.5:80, 10.0.0.6:80
   ...`). Groups with different hosts are never merged, so no value loses its host.

`host_list` writes many names compactly: `online[1-16]`, `web-[01-03,07]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from labctl.model import Finding, Severity

__all__ = ["FindingGroup", "group_findings", "host_list", "short_refs"]

SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARN: 1, Severity.INFO: 2}
#: Step 2 merges messages only when the words they share outnumber this (no unrelated merges).
MIN_SHARED_WORDS = 3
#: ... and only when the words that differ are few (a name, an address, `host (address)`).
MAX_RUN_WORDS = 3


@dataclass(frozen=True)
class FindingGroup:
    """Findings that say the same thing about several hosts (or several addresses)."""

    id: str
    severity: Severity
    refusal: bool
    message: str
    hint: str
    hosts: tuple[str, ...]
    count: int          # how many findings the group stands for

    @property
    def where(self) -> str:
        """The hosts, compact: `target`, `online[1-16] (16 hosts)`."""
        text = host_list(self.hosts)
        return f"{text} ({len(self.hosts)} hosts)" if len(self.hosts) > 2 else text


def group_findings(findings: Iterable[Finding]) -> list[FindingGroup]:
    """The findings grouped (see the module doc): errors first, refusals first within them,
    then in the checks' order."""
    exact: dict[tuple[object, ...], list[Finding]] = {}
    for f in findings:
        exact.setdefault((f.severity, f.refusal, f.id, f.message, f.hint), []).append(f)
    groups = [FindingGroup(f[0].id, f[0].severity, f[0].refusal, f[0].message, f[0].hint,
                           _hosts(x.host for x in f), len(f)) for f in exact.values()]
    merged = _merge_messages(groups)
    return sorted(merged, key=lambda g: (SEVERITY_ORDER.get(g.severity, 3), not g.refusal))


def short_refs(findings: Iterable[Finding]) -> str:
    """`id@hosts` per check, e.g. `service.unreachable@online[1-16], route.operator@target,
    python.missing@assistant,target`: the one-line summary of blocking findings in a refusal
    message (a check's hosts without spaces, so they read as one item)."""
    hosts: dict[str, list[str]] = {}
    for f in findings:
        hosts.setdefault(f.id, []).append(f.host)
    return ", ".join(f"{check}@{host_list(_hosts(names), sep=',')}"
                     for check, names in hosts.items())


def _hosts(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names), key=_natural))


def _natural(name: str) -> tuple[object, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


# -- step 2: one run of differing words ------------------------------------------------------
_TOKEN = re.compile(r"\s+|[^\s:;,]+|[:;,]")


def _merge_messages(groups: list[FindingGroup]) -> list[FindingGroup]:
    buckets: dict[tuple[object, ...], list[FindingGroup]] = {}
    for g in groups:
        buckets.setdefault((g.severity, g.refusal, g.id, g.hint, g.hosts), []).append(g)
    out: list[FindingGroup] = []
    for bucket in buckets.values():
        message = _one_message([g.message for g in bucket]) if len(bucket) > 1 else None
        if message is None:
            out.extend(bucket)
        else:
            first = bucket[0]
            out.append(FindingGroup(first.id, first.severity, first.refusal, message,
                                    first.hint, first.hosts, sum(g.count for g in bucket)))
    return out


def _one_message(messages: Sequence[str]) -> Optional[str]:
    """The messages as one, listing the one run of words where they differ; None when they
    differ in more than one place or share too little."""
    tokens = [_TOKEN.findall(m) for m in messages]
    if any("".join(t) != m for t, m in zip(tokens, messages)):
        return None
    head = _common_prefix(tokens)
    tail = _common_prefix([t[head:][::-1] for t in tokens])
    head = _to_word_start(tokens[0], head)
    tail = _to_word_end(tokens[0], tail)
    middles = ["".join(t[head:len(t) - tail]).strip() for t in tokens]
    shared = tokens[0][:head] + tokens[0][len(tokens[0]) - tail:]
    if not all(middles) or sum(1 for t in shared if t.strip()) < MIN_SHARED_WORDS:
        return None
    if any(not _balanced(m) for m in middles) or _two_places(middles):
        return None
    before = "".join(tokens[0][:head])
    after = "".join(tokens[0][len(tokens[0]) - tail:])
    return f"{before}{', '.join(dict.fromkeys(middles))}{after}"


def _two_places(middles: Sequence[str]) -> bool:
    """The runs share a word in the same place (`b c d` / `x c y`): the messages differ in two
    places, not one, or the runs are longer than a name or address needs."""
    words = [m.split() for m in middles]
    if any(len(w) > MAX_RUN_WORDS for w in words):
        return True
    return len({len(w) for w in words}) == 1 and any(
        len(set(column)) == 1 for column in zip(*words))


def _common_prefix(seqs: Sequence[Sequence[str]]) -> int:
    n = 0
    for column in zip(*seqs):
        if any(c != column[0] for c in column):
            break
        n += 1
    return n


def _to_word_start(tokens: Sequence[str], head: int) -> int:
    """Move the end of the shared head back to just after whitespace (never mid-word)."""
    while head > 0 and not tokens[head - 1].isspace():
        head -= 1
    return head


def _to_word_end(tokens: Sequence[str], tail: int) -> int:
    """Shorten the shared tail to start where a word ends (never mid-word)."""
    n = len(tokens)
    while tail > 0 and not _ends_word(tokens, n - tail):
        tail -= 1
    return tail


def _ends_word(tokens: Sequence[str], i: int) -> bool:
    """tokens[i] is whitespace, or punctuation closing a word (`address X: the` but not the
    `:` of `10.0.0.5:80`)."""
    if tokens[i].isspace():
        return True
    return tokens[i] in ":;," and (i + 1 == len(tokens) or tokens[i + 1].isspace())


def _balanced(text: str) -> bool:
    return text.count("(") == text.count(")") and text.count("[") == text.count("]")


# -- compact host names ------------------------------------------------------------------------
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def host_list(hosts: Sequence[str], sep: str = ", ") -> str:
    """Host names, numbered runs in brackets: `online[1-16]`, `web-[01-03,07], target`.
    Three or more names with the same stem are bracketed (where the first of them stood);
    other names are kept as they are, in order."""
    stems: dict[tuple[str, int], list[int]] = {}
    for h in hosts:
        stem = _stem(h)
        if stem is not None:
            stems.setdefault(stem[0], []).append(stem[1])
    parts: list[str] = []
    shown: set[tuple[str, int]] = set()
    for h in hosts:
        stem = _stem(h)
        if stem is None or len(stems[stem[0]]) < 3:
            parts.append(h)
        elif stem[0] not in shown:
            shown.add(stem[0])
            (prefix, width), numbers = stem[0], stems[stem[0]]
            parts.append(f"{prefix}[{_ranges(numbers, width)}]")
    return sep.join(parts)


def _stem(name: str) -> Optional[tuple[tuple[str, int], int]]:
    """((prefix, zero-padded width or 0), number) of `web-07`; None without a number."""
    m = _NUMBERED.match(name)
    if m is None:
        return None
    digits = m.group(2)
    width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
    return (m.group(1), width), int(digits)


def _ranges(numbers: Sequence[int], width: int) -> str:
    values = sorted(set(numbers))
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))

    def fmt(v: int) -> str:
        return str(v).zfill(width) if width else str(v)

    return ",".join(fmt(a) if a == b else f"{fmt(a)}-{fmt(b)}" for a, b in runs)
