"""The `engine:` section: tcpcopy's options and its per-request HTTP selection (`select:`),
each selection rule checked with the engine's own parser."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, StrictBool, StrictFloat, StrictInt, field_validator
from pydantic import model_validator as _model_validator

from engine.http.select import SAFE_METHODS, RuleError, Selection, parse_rule
from labctl.inventory.base import FieldProblem, _Frozen


def _one_or_many(value: Any) -> Any:
    """A single string stands for a list of one (`allow_host: a.example`)."""
    return [value] if isinstance(value, str) else value


#: A list of strings, or one string for a list of one.
Strings = Annotated[list[str], BeforeValidator(_one_or_many)]
#: The rule kinds of `engine.select`, in the order their flags are given to tcpcopy.
SELECT_RULES = ("allow_host", "deny_host", "allow_path", "deny_path", "allow_method",
                "allow_header", "deny_header")


class Select(_Frozen):
    """tcpcopy's per-request HTTP selection (`--allow-host` ... `--non-http`), see
    engine/http/select.py: deny wins, allow kinds are AND-ed, rules of one kind OR-ed.
    Every value is checked with the engine's own parser, so a bad regex or host name is an
    error naming the field and its index (`engine.select.allow_path[1]`), not a surprise on
    the host when tcpcopy starts."""

    allow_host: Strings = Field(default_factory=list)
    deny_host: Strings = Field(default_factory=list)
    allow_path: Strings = Field(default_factory=list)
    deny_path: Strings = Field(default_factory=list)
    allow_method: Strings = Field(default_factory=list)
    allow_header: Strings = Field(default_factory=list)
    deny_header: Strings = Field(default_factory=list)
    safe: StrictBool = False
    safe_methods: Strings = Field(default_factory=lambda: list(SAFE_METHODS), min_length=1)
    on_unparsable: Literal["copy", "skip"] = "copy"
    non_http: Literal["copy", "skip"] = "copy"

    @field_validator("safe_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        methods = [m.strip().upper() for v in value for m in v.split(",") if m.strip()]
        try:
            Selection(safe_methods=methods)
        except RuleError as exc:
            raise ValueError(f"--safe-methods: {exc.why}") from None
        return methods

    @_model_validator(mode="after")
    def _rules_parse(self) -> Select:
        if "safe_methods" in self.model_fields_set and not self.safe:
            raise FieldProblem(("engine", "select", "safe_methods"),
                               "safe_methods applies only with safe: true (add it, or remove "
                               "safe_methods)")
        for key in SELECT_RULES:
            for i, value in enumerate(getattr(self, key)):
                flag = "--" + key.replace("_", "-")
                try:
                    parse_rule(flag, value)
                except RuleError as exc:
                    raise FieldProblem(("engine", "select", key, i),
                                       f"{flag} {value!r}: {exc.why}") from None
        return self

    def rule_flags(self) -> list[tuple[str, str]]:
        """The rules as (flag, value) pairs, in a fixed order: SELECT_RULES, then as listed."""
        return [("--" + key.replace("_", "-"), value) for key in SELECT_RULES
                for value in getattr(self, key)]

    def selection(self) -> Selection:
        """The engine's own Selection for these rules (what tcpcopy will decide)."""
        return Selection.from_flags(self.rule_flags(), safe=self.safe,
                                    safe_methods=self.safe_methods,
                                    on_unparsable=self.on_unparsable, non_http=self.non_http)


def _workers(value: Any) -> Any:
    """engine.workers: one clear message instead of one per branch of the union."""
    if value == "auto" or (type(value) is int and 1 <= value <= 64):
        return value
    raise ValueError("a whole number from 1 to 64, or 'auto'")


#: engine.workers: auto never asks for more workers than this, whatever the CPU count.
AUTO_WORKERS_MAX = 16


class Engine(_Frozen):
    sample_percent: StrictInt = Field(default=100, ge=1, le=100)
    multiplier: StrictInt = Field(default=1, ge=1, le=64)
    session_timeout: StrictInt = Field(default=120, ge=1)
    keepalive_timeout: StrictInt = Field(default=240, ge=1)
    memory_mb: StrictInt = Field(default=512, ge=16)
    datalink: StrictBool = False
    connections: StrictInt = Field(default=2, ge=1, le=16)
    lonely: StrictBool = True
    #: tcpcopy --hold-timeout (with lonely): seconds sessions are held while no intercept is
    #: connected (restart, outage) before they are given up; 0 refuses new ones at once.
    hold_timeout: StrictInt = Field(default=30, ge=0, le=3600)
    #: tcpcopy --target-stall-s: seconds the target may leave several requests unanswered
    #: before tcpcopy refuses new sessions and sheds the bytes held for it, until it answers
    #: again (its memory stays flat); 0 = off; unset = the engine's default (0.5).
    target_stall_s: Optional[Union[StrictInt, StrictFloat]] = Field(default=None, ge=0, le=3600)
    no_wait: StrictBool = False
    max_sessions: StrictInt = Field(default=65536, ge=1)
    #: tcpcopy --capture-acks: also capture the clients' pure ACKs (server-first protocols).
    capture_acks: StrictBool = False
    #: tcpcopy's per-request HTTP selection; None: copy every request (no selection flags).
    select: Optional[Select] = None
    #: The interpreter the daemons run under: auto = pypy3 where the host has it (facts),
    #: else python3. labctl never installs either.
    runtime: Literal["auto", "python3", "pypy3"] = "auto"
    #: Engine workers per daemon (tcpcopy --workers/--intercept-workers, intercept --workers);
    #: auto = the daemon host's CPU count (facts), at most AUTO_WORKERS_MAX.
    workers: Annotated[Union[int, Literal["auto"]], BeforeValidator(_workers)] = 1
    #: Both daemons' TPACKET_V3 capture ring, MiB per capture socket and worker (kernel memory
    #: allocated up front; about half the CPU per request of recv() at moderate rates); unset =
    #: the engine's default (recv(), no ring), 0 = recv() said explicitly.
    capture_ring_mb: Optional[StrictInt] = Field(default=None, ge=0, le=4096)
    #: Both daemons' --gather-ms: an idle wake-up waits this long (ms) before handling its
    #: events, so the next ones come in the same wake-up (less CPU at moderate rates, up to
    #: that much latency per hop); unset = the engine's default (0, off).
    gather_ms: Optional[Union[StrictInt, StrictFloat]] = Field(default=None, ge=0, le=50)
    #: Where each daemon also writes its counters in the Prometheus text format (for
    #: node_exporter's textfile collector): an absolute path ending in .prom, where `{daemon}`
    #: (tcpcopy/intercept) and `{host}` are replaced. None: no metrics file.
    metrics_file: Optional[str] = None
    #: Hot backup: keep the daemons running, restarted with back-off when they exit (systemd's
    #: Restart=on-failure where the host runs systemd, else the engine's own supervisor);
    #: `labctl up --supervise` turns it on for one run.
    supervise: StrictBool = False

    @field_validator("metrics_file")
    @classmethod
    def _metrics_path(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        if not value.startswith("/") or not value.endswith(".prom"):
            raise ValueError(f"{value!r}: an absolute path ending in .prom (node_exporter's "
                             "textfile collector reads *.prom)")
        unknown = set(re.findall(r"{([^}]*)}", value)) - {"daemon", "host"}
        if unknown:
            raise ValueError(f"{value!r}: unknown placeholder {{{sorted(unknown)[0]}}} "
                             "(only {daemon} and {host})")
        return value

    def metrics_path(self, daemon: str, host: str) -> Optional[str]:
        """`metrics_file` for one daemon on one host (placeholders replaced), or None."""
        if self.metrics_file is None:
            return None
        return self.metrics_file.replace("{daemon}", daemon).replace("{host}", host)
