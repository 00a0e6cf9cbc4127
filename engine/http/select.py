"""Which requests of a copied stream to copy: rules from flags, pure decisions, counters.

Rules (each repeatable; the flag names are the ones tcpcopy will take):

    --allow-host / --deny-host   HOST exactly, or ``*.example.com`` (any name under it, not
                                 example.com itself); case-insensitive, port ignored
    --allow-path / --deny-path   a prefix of the path (query excluded), or ``~REGEX`` searched
                                 in the path and query (``re.search``)
    --allow-method               METHOD[,METHOD…] (methods are case-sensitive; upper case)
    --allow-header / --deny-header   NAME:REGEX, searched in each value of field NAME
    --safe [--safe-methods GET,HEAD,OPTIONS]   copy only these (idempotent) methods
    --on-unparsable copy|skip    the rest of a connection that cannot be framed
    --non-http copy|skip         a connection whose first bytes are not HTTP/1.x

A request is copied when it matches no deny rule, its method is safe (with ``--safe``), and it
satisfies every allow *kind* that has at least one rule: some ``--allow-host`` AND some
``--allow-path`` AND some ``--allow-method`` AND some ``--allow-header`` (rules of one kind are
alternatives). No rule at all copies everything. Deny wins over allow.

Each decision names the one rule that made it, and is counted under that name
(``counters()``: name -> {selected, skipped, unparsable, non_http}): the first deny rule that
matched, ``--safe``, the first allow kind that nothing matched (``--allow-path (none
matched)``), else the first matching allow rule (hosts, paths, methods, headers in that order),
else ``default``.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Pattern, Sequence, Tuple

from engine.http.framer import UPGRADE, Opaque, Request

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
KINDS = ("host", "path", "method", "header")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HOST = re.compile(r"[A-Za-z0-9_.\[\]:-]+\Z")


class RuleError(ValueError):
    """A rule that cannot be used; the message names the flag and the value."""

    def __init__(self, flag: str, value: str, why: str) -> None:
        super().__init__(f"{flag} {value!r}: {why}")
        self.flag, self.value, self.why = flag, value, why


class Decision(NamedTuple):
    copy: bool
    rule: str                   # the name the decision is counted under


class Rule(NamedTuple):
    """One parsed rule; ``name`` is how it is shown and counted (``--allow-path /api``)."""

    flag: str
    value: str
    kind: str                   # one of KINDS
    deny: bool
    host: str = ""              # host: exact name, or ".example.com" for a wildcard
    prefix: Optional[str] = None    # path: a prefix (else ``pattern``)
    methods: Tuple[str, ...] = ()
    field: str = ""             # header: lower-case name
    pattern: Optional[Pattern[str]] = None

    @property
    def name(self) -> str:
        return f"{self.flag} {self.value}"

    def matches(self, request: Request) -> bool:
        if self.kind == "host":
            host = request.host
            if self.host.startswith("."):
                return host.endswith(self.host) and len(host) > len(self.host)
            return host == self.host
        if self.kind == "path":
            if self.prefix is not None:
                return request.path.startswith(self.prefix)
            assert self.pattern is not None
            return self.pattern.search(request.origin_target) is not None
        if self.kind == "method":
            return request.method in self.methods
        assert self.pattern is not None
        return any(k == self.field and self.pattern.search(v) is not None
                   for k, v in request.headers)


def parse_rule(flag: str, value: str) -> Rule:
    """``--allow-path`` + ``~^/api/v[12]/`` -> a Rule; raises RuleError."""
    kind = flag.rsplit("-", 1)[-1]
    deny = flag.startswith("--deny-")
    if kind not in KINDS or not flag.startswith(("--allow-", "--deny-")) or (
            deny and kind == "method"):
        raise RuleError(flag, value, "not a selection flag")
    if kind == "host":
        return _host_rule(flag, value, deny)
    if kind == "path":
        if value.startswith("~"):
            return Rule(flag, value, kind, deny, pattern=_regex(flag, value, value[1:]))
        if not value.startswith("/"):
            raise RuleError(flag, value, "a path prefix starts with '/' (or '~' for a regex)")
        return Rule(flag, value, kind, deny, prefix=value)
    if kind == "method":
        return Rule(flag, value, kind, deny, methods=_methods(flag, value))
    name, sep, regex = value.partition(":")
    name = name.strip()
    if not sep or not _TOKEN.match(name):
        raise RuleError(flag, value, "expected NAME:REGEX (e.g. 'User-Agent:^curl/')")
    return Rule(flag, value, kind, deny, field=name.lower(),
                pattern=_regex(flag, value, regex.strip()))


def _host_rule(flag: str, value: str, deny: bool) -> Rule:
    host = value.strip().lower().rstrip(".")
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    if not bare or "*" in bare or not _HOST.match(bare):
        raise RuleError(flag, value, "expected a host name, or *.domain for any name under it")
    return Rule(flag, value, "host", deny, host="." + bare if wildcard else bare)


def _methods(flag: str, value: str) -> Tuple[str, ...]:
    methods = tuple(m.strip().upper() for m in value.split(",") if m.strip())
    if not methods or not all(_TOKEN.match(m) for m in methods):
        raise RuleError(flag, value, "expected METHOD[,METHOD...] (e.g. GET,HEAD)")
    return methods


def _regex(flag: str, value: str, regex: str) -> Pattern[str]:
    if not regex:
        raise RuleError(flag, value, "empty regular expression")
    try:
        return re.compile(regex)
    except re.error as exc:
        raise RuleError(flag, value, f"bad regular expression: {exc}") from None


def _choice(flag: str, value: str) -> bool:
    if value not in ("copy", "skip"):
        raise RuleError(flag, value, "expected copy or skip")
    return value == "copy"


class Selection:
    """The rules of one tcpcopy, and their counters (one object shared by every session)."""

    def __init__(self, rules: Iterable[Rule] = (), safe: bool = False,
                 safe_methods: Sequence[str] = SAFE_METHODS, on_unparsable: str = "copy",
                 non_http: str = "copy") -> None:
        self.rules = tuple(rules)
        self.deny = [r for r in self.rules if r.deny]
        self.allow: List[Tuple[str, List[Rule]]] = [
            (kind, rules_) for kind in KINDS
            if (rules_ := [r for r in self.rules if not r.deny and r.kind == kind])]
        self.safe = safe
        self.safe_methods = frozenset(_methods("--safe-methods", ",".join(safe_methods)))
        self.copy_unparsable = _choice("--on-unparsable", on_unparsable)
        self.copy_non_http = _choice("--non-http", non_http)
        self._unparsable = Decision(self.copy_unparsable, f"--on-unparsable {on_unparsable}")
        self._non_http = Decision(self.copy_non_http, f"--non-http {non_http}")
        self._counters: Dict[str, Dict[str, int]] = {}
        for rule in self.rules:                 # every rule shows in the stats, even at 0
            self._counts(rule.name)

    @classmethod
    def from_flags(cls, flags: Sequence[Tuple[str, str]], safe: bool = False,
                   safe_methods: Sequence[str] = SAFE_METHODS, on_unparsable: str = "copy",
                   non_http: str = "copy") -> Selection:
        """``[("--allow-path", "/api"), ("--deny-host", "*.internal")]`` -> Selection."""
        return cls([parse_rule(flag, value) for flag, value in flags], safe, safe_methods,
                   on_unparsable, non_http)

    @property
    def selects_everything(self) -> bool:
        """No rule can skip a request (the framer could be bypassed)."""
        return not self.rules and not self.safe and self.copy_unparsable

    def decide(self, request: Request) -> Decision:
        """Copy this request or not, and count it."""
        decision = self.judge(request)
        self._count(decision.rule, "selected" if decision.copy else "skipped")
        return decision

    def judge(self, request: Request) -> Decision:
        """The decision for this request, not counted (``labctl verify`` judges log lines)."""
        for rule in self.deny:
            if rule.matches(request):
                return Decision(False, rule.name)
        if self.safe and request.method not in self.safe_methods:
            return Decision(False, "--safe")
        first: Optional[str] = None
        for kind, rules in self.allow:
            hit = next((r for r in rules if r.matches(request)), None)
            if hit is None:
                return Decision(False, f"--allow-{kind} (none matched)")
            first = first or hit.name
        return Decision(True, first or "default")

    def decide_opaque(self, opaque: Opaque, tunnel: Optional[Decision] = None) -> Decision:
        """The rest of a connection that is not framed: a non-HTTP connection, an unparsable
        remainder, or (``UPGRADE``) the tunnel of a request, which follows ``tunnel``, the
        decision of that request. Counted, except the tunnel (its request was)."""
        if opaque.reason == UPGRADE and tunnel is not None:
            return tunnel
        decision = self._non_http if opaque.not_http else self._unparsable
        self._count(decision.rule, "non_http" if opaque.not_http else "unparsable")
        return decision

    def _count(self, rule: str, what: str) -> None:
        self._counts(rule)[what] += 1

    def _counts(self, rule: str) -> Dict[str, int]:
        counts = self._counters.get(rule)
        if counts is None:
            counts = self._counters[rule] = {
                "selected": 0, "skipped": 0, "unparsable": 0, "non_http": 0}
        return counts

    def report(self, totals: Dict[str, int]) -> Dict[str, object]:
        """The rules and their counters, for the stats file; ``totals`` (the daemon's counter
        dict) gets ``requests_selected``, ``requests_skipped``, ``streams_unparsable`` and
        ``streams_non_http`` refreshed."""
        by_rule = self.counters()
        for name, what in (("requests_selected", "selected"), ("requests_skipped", "skipped"),
                           ("streams_unparsable", "unparsable"),
                           ("streams_non_http", "non_http")):
            totals[name] = sum(counts[what] for counts in by_rule.values())
        return {"rules": [r.name for r in self.rules], "safe": self.safe, "by_rule": by_rule}

    def counters(self) -> Dict[str, Dict[str, int]]:
        """A copy of the counters, for the stats JSON: rule name -> counts."""
        return {rule: dict(counts) for rule, counts in self._counters.items()}
