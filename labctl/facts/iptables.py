"""`iptables-save` parsed into tables, chains and rules, plus the normaliser used to compare
rule sets before `up` and after `down`."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Optional

from labctl.facts.base import NOT_FOUND, Fact, FactParseError, require_ok
from labctl.model import CHAIN_PREFIX
from labctl.transport.base import Result

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
_COUNTERS = re.compile(r"\[\d+:\d+\]")


@dataclass(frozen=True)
class Chain:
    name: str
    policy: str  # ACCEPT/DROP for built-in chains, "-" for user chains
    rules: tuple[str, ...] = ()  # the text after `-A <chain> `


@dataclass(frozen=True)
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)

    @property
    def is_default(self) -> bool:
        """Only built-in chains, ACCEPT, no rules: what the first iptables call instantiates."""
        return all(
            c.name in BUILTIN_CHAINS.get(self.name, ()) and c.policy == "ACCEPT" and not c.rules
            for c in self.chains.values()
        )


@dataclass(frozen=True)
class Ruleset:
    """`present=False` when iptables-save is not installed."""

    present: bool = True
    tables: dict[str, Table] = field(default_factory=dict)

    def chain(self, table: str, name: str) -> Optional[Chain]:
        t = self.tables.get(table)
        return t.chains.get(name) if t else None

    def rules(self, table: str, chain: str) -> tuple[str, ...]:
        c = self.chain(table, chain)
        return c.rules if c else ()

    def labctl_objects(self, lab: Optional[str] = None) -> list[str]:
        """`table/chain` of labctl-owned chains and `table/chain: rule` of tagged rules."""
        prefix = CHAIN_PREFIX + (lab or "")
        tag = f"labctl:{lab}:" if lab else "labctl:"
        found = []
        for t in self.tables.values():
            for c in t.chains.values():
                if c.name.startswith(prefix) and (lab is None or c.name == prefix):
                    found.append(f"{t.name}/{c.name}")
                found += [f"{t.name}/{c.name}: {r}" for r in c.rules if tag in r]
        return found


def parse_iptables_save(text: str) -> Ruleset:
    tables: dict[str, Table] = {}
    current: Optional[str] = None
    chains: dict[str, Chain] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current, chains = line[1:], {}
        elif line == "COMMIT":
            if current is None:
                raise FactParseError(f"line {number}: COMMIT outside a table")
            tables[current] = Table(current, chains)
            current = None
        elif current is None:
            raise FactParseError(f"line {number}: {line[:40]!r} outside a table")
        elif line.startswith(":"):
            parts = line[1:].split()
            if len(parts) < 2:
                raise FactParseError(f"line {number}: bad chain line {line!r}")
            chains[parts[0]] = Chain(parts[0], parts[1])
        elif line.startswith("-A "):
            _, name, *rest = line.split(" ", 2)
            if name not in chains:
                raise FactParseError(f"line {number}: rule for undeclared chain {name}")
            old = chains[name]
            chains[name] = Chain(name, old.policy, (*old.rules, rest[0] if rest else ""))
        else:
            raise FactParseError(f"line {number}: unexpected {line[:40]!r}")
    if current is not None:
        raise FactParseError(f"table {current} has no COMMIT")
    return Ruleset(True, tables)


def parse_iptables_result(result: Result) -> Ruleset:
    if result.exit_code == NOT_FOUND:
        return Ruleset(present=False)
    return parse_iptables_save(require_ok(result))


def normalise_iptables_save(text: str) -> str:
    """Comparable form: no comments/counters, default (empty) tables dropped, tables sorted.

    Rule order inside a chain is kept (it matters); chain declarations are sorted.
    """
    ruleset = parse_iptables_save(_COUNTERS.sub("[0:0]", text))
    lines = []
    for name in sorted(ruleset.tables):
        table = ruleset.tables[name]
        if table.is_default:
            continue
        lines.append(f"*{name}")
        for chain in sorted(table.chains.values(), key=lambda c: c.name):
            lines.append(f":{chain.name} {chain.policy}")
        for chain in sorted(table.chains.values(), key=lambda c: c.name):
            lines += [f"-A {chain.name} {rule}" for rule in chain.rules]
        lines.append("COMMIT")
    return "\n".join(lines) + ("\n" if lines else "")


def rule_words(rule: str) -> list[str]:
    """A saved rule split like the shell would (comments are quoted in iptables-save)."""
    return shlex.split(rule)


IPTABLES = Fact("iptables", ("iptables-save",), parse_iptables_result, sudo=True)
