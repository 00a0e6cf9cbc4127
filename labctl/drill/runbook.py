"""Drill runbooks: YAML text -> a validated, frozen `Runbook` (pydantic), errors naming file:line.

A runbook names the inventory (a file, or a local lab the drill builds and destroys), optional
engine overrides, and ordered steps. Each step is a bare word (`- up`, `- down`) or a one-key
mapping (`- traffic: {requests: 1000}`; `- wait: 2`; `- fault: stop-intercept`). Line tracking
and duplicate-key detection reuse the inventory loader's YAML composer (`labctl.inventory.load`).

Public API:
    load_runbook(path) -> Runbook
    parse_runbook(text, source="<string>") -> Runbook
    RunbookError (a UsageError: exit 2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from labctl.errors import InventoryError, UsageError
from labctl.inventory.yamlsource import (
    VALID_HINTS,
    Located,
    PathKey,
    compose_mapping,
    dotted,
    nearest_line,
)
from labctl.lab.traffic import parse_sizes

MAX_ERRORS = 8
RUNBOOK_NAME = r"^[a-z][a-z0-9-]{0,31}$"
LAB_NAME = r"^[a-z][a-z0-9]{0,7}$"
BUCKETS = ("capture", "session", "target", "path", "unexplained")
#: Each fault and the kind that ends it (cleanup ends whatever is still active).
FAULT_PAIRS = {"stop-intercept": "start-intercept", "drop": "end-drop",
               "stall-target": "resume-target", "remove-route": "restore-route"}
#: Each ending kind and the fault it ends (`start-intercept` -> `stop-intercept`).
FAULT_ENDS = {end: start for start, end in FAULT_PAIRS.items()}
FAULT_KINDS = (*FAULT_PAIRS, *FAULT_PAIRS.values())
WAIT_CONDITIONS = ("traffic-done", "copies-settled", "tcpcopy-connected")
STEP_KINDS = ("up", "traffic", "wait", "fault", "verify", "compare", "down")
#: Steps and faults that need the local lab (they act inside its namespaces).
LAB_ONLY_FAULTS = ("stall-target", "resume-target")


INVENTORY_SHAPE = ("expected an inventory file path, or {lab: {name: NAME, topology: "
                   "three-server|two-server}} to build the local lab for the drill")
PATTERN_HINTS = {LAB_NAME: "a lowercase letter, then up to 7 lowercase letters or digits",
                 RUNBOOK_NAME: "a lowercase letter, then up to 31 lowercase letters, digits, '-'"}


class RunbookError(UsageError):
    """A runbook that does not validate; the message names file, line and field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LabRef(_Frozen):
    """Build this local lab for the drill and destroy it afterwards."""

    name: str = Field(pattern=LAB_NAME)
    topology: Literal["three-server", "two-server"] = "three-server"


class InventoryRef(_Frozen):
    lab: LabRef


class EngineOverrides(_Frozen):
    """Inventory `engine:` fields the drill replaces (the rest stay as the inventory says)."""

    sample_percent: Optional[StrictInt] = Field(default=None, ge=1, le=100)
    multiplier: Optional[StrictInt] = Field(default=None, ge=1, le=64)
    session_timeout: Optional[StrictInt] = Field(default=None, ge=1)
    keepalive_timeout: Optional[StrictInt] = Field(default=None, ge=1)
    memory_mb: Optional[StrictInt] = Field(default=None, ge=16)
    connections: Optional[StrictInt] = Field(default=None, ge=1, le=16)
    max_sessions: Optional[StrictInt] = Field(default=None, ge=1)
    lonely: Optional[StrictBool] = None

    def as_update(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class UpStep(_Frozen):
    step: Literal["up"] = "up"
    fix: StrictBool = False

    def title(self) -> str:
        return "up" + (" --fix" if self.fix else "")


def _default_sizes() -> list[Union[int, str]]:
    return [0, 1024]


class TrafficStep(_Frozen):
    """Client traffic in the local lab (labctl.lab.traffic inside the client namespace)."""

    step: Literal["traffic"] = "traffic"
    requests: StrictInt = Field(ge=1, le=1_000_000)
    mode: Literal["keepalive", "new", "mixed"] = "mixed"
    connections: StrictInt = Field(default=4, ge=1, le=64)
    rate: Optional[float] = Field(default=None, gt=0)
    post_sizes: list[Union[StrictInt, str]] = Field(default_factory=_default_sizes)
    get_paths: list[str] = Field(default_factory=lambda: ["/"])
    #: Start the generator and go on with the next step (`wait: {until: traffic-done}` joins it).
    background: StrictBool = False
    timeout: float = Field(default=300.0, gt=0)

    @field_validator("post_sizes")
    @classmethod
    def _sizes(cls, value: list[Union[int, str]]) -> list[Union[int, str]]:
        parse_sizes(",".join(str(v) for v in value))  # ValueError names the bad entry
        return value

    @field_validator("get_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or "," in path:
                raise ValueError(f"{path!r}: a path starts with '/' and has no comma")
        return value

    def title(self) -> str:
        rate = f" at {self.rate:g}/s" if self.rate else ""
        bg = " (background)" if self.background else ""
        return f"traffic: {self.requests} {self.mode} requests{rate}{bg}"


class WaitStep(_Frozen):
    """Sleep `seconds`, or wait `until` a condition holds (failing after `timeout`)."""

    step: Literal["wait"] = "wait"
    seconds: Optional[float] = Field(default=None, gt=0, le=3600)
    until: Optional[Literal["traffic-done", "copies-settled", "tcpcopy-connected"]] = None
    timeout: float = Field(default=60.0, gt=0, le=3600)
    #: copies-settled: the target's log did not grow for this long.
    quiet: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one(self) -> WaitStep:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("give either seconds or until (a condition), not both or neither")
        return self

    def title(self) -> str:
        if self.seconds is not None:
            return f"wait {self.seconds:g} s"
        return f"wait until {self.until} (timeout {self.timeout:g} s)"


class FaultStep(_Frozen):
    """Inject (or end) a fault; every fault still active is reverted at cleanup."""

    step: Literal["fault"] = "fault"
    kind: Literal["stop-intercept", "start-intercept", "drop", "stall-target", "remove-route",
                  "restore-route", "end-drop", "resume-target"]
    #: drop: percentage of copied packets dropped on the online host(s).
    percent: Optional[float] = Field(default=None, gt=0, le=100)
    #: drop: one online host by inventory name (default: all of them).
    host: Optional[str] = None
    #: remove-route: the client network routed via the assistant (default: the first).
    network: Optional[str] = None

    @model_validator(mode="after")
    def _params(self) -> FaultStep:
        if self.kind == "drop" and self.percent is None:
            raise ValueError("a drop fault needs percent (of copied packets), e.g. 10")
        if self.kind != "drop" and (self.percent is not None or self.host is not None):
            raise ValueError(f"percent and host apply to drop faults only, not {self.kind}")
        if self.kind != "remove-route" and self.network is not None:
            raise ValueError(f"network applies to remove-route only, not {self.kind}")
        return self

    def title(self) -> str:
        extra = f" {self.percent:g} %" if self.percent is not None else ""
        return f"fault: {self.kind}{extra}" + (f" on {self.host}" if self.host else "")


class VerifyStep(_Frozen):
    """Run the loss ledger over the traffic since the previous verify (or since `up`)."""

    step: Literal["verify"] = "verify"
    expect: Literal["pass", "fail"] = "pass"
    min_ratio: Optional[float] = Field(default=None, ge=0)
    max_ratio: Optional[float] = Field(default=None, ge=0)
    #: bucket -> the least share (0..1) of the missing copies it must explain.
    attribution: dict[str, float] = Field(default_factory=dict)
    #: Wait first until the target's log stayed quiet this long (0: verify at once).
    settle: float = Field(default=2.0, ge=0, le=60)
    settle_timeout: float = Field(default=60.0, gt=0, le=600)

    @field_validator("attribution")
    @classmethod
    def _buckets(cls, value: dict[str, float]) -> dict[str, float]:
        for name, share in value.items():
            if name not in BUCKETS:
                raise ValueError(f"unknown bucket {name!r}; buckets: {', '.join(BUCKETS)}")
            if not 0 <= share <= 1:
                raise ValueError(f"{name}: a share is between 0 and 1 (got {share!r})")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> VerifyStep:
        if self.min_ratio is not None and self.max_ratio is not None and \
                self.min_ratio > self.max_ratio:
            raise ValueError(f"min_ratio {self.min_ratio} is above max_ratio {self.max_ratio}")
        return self

    def title(self) -> str:
        return f"verify (expect {self.expect})"


class CompareStep(_Frozen):
    """Run `labctl compare` (baseline vs candidate target) over the traffic since the last
    mark (`up` or the previous verify); the mark stays, so a verify after it judges the same
    traffic. `expect: regression` for a drill that plants one."""

    step: Literal["compare"] = "compare"
    expect: Literal["pass", "regression"] = "pass"
    #: Wait first until the targets' logs stayed quiet this long (0: compare at once).
    settle: float = Field(default=2.0, ge=0, le=60)
    settle_timeout: float = Field(default=60.0, gt=0, le=600)

    def title(self) -> str:
        return f"compare (expect {self.expect})"


class DownStep(_Frozen):
    step: Literal["down"] = "down"

    def title(self) -> str:
        return "down"


Step = Annotated[Union[UpStep, TrafficStep, WaitStep, FaultStep, VerifyStep, CompareStep,
                       DownStep], Field(discriminator="step")]


class Runbook(_Frozen):
    name: str = Field(pattern=RUNBOOK_NAME)
    description: str = ""
    inventory: Union[str, InventoryRef]
    engine: EngineOverrides = EngineOverrides()
    steps: list[Step] = Field(min_length=1)

    @property
    def lab(self) -> Optional[LabRef]:
        return self.inventory.lab if isinstance(self.inventory, InventoryRef) else None

    @model_validator(mode="after")
    def _lab_only(self) -> Runbook:
        if self.lab is not None:
            return self
        for i, step in enumerate(self.steps):
            if isinstance(step, TrafficStep):
                raise _Problem(("steps", i, "traffic"), "traffic steps need the local lab "
                               "(inventory: {lab: {name: ...}}); with a real inventory the "
                               "traffic is the online server's own")
            if isinstance(step, FaultStep) and step.kind in LAB_ONLY_FAULTS:
                raise _Problem(("steps", i, "fault", "kind"),
                               f"{step.kind} works in the local lab only")
        return self


class _Problem(ValueError):
    """A cross-field error that knows the path it is about (mapped to a line)."""

    def __init__(self, path: PathKey, message: str):
        super().__init__(message)
        self.path = path


# ---------------------------------------------------------------- loading


def _normalise_steps(data: Any, located: Located) -> Any:
    """`- up` -> {step: up}; `- wait: 2` -> {step: wait, seconds: 2}; `- fault: drop` ->
    {step: fault, kind: drop}; `- traffic: {...}` -> {step: traffic, ...}."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return data
    out = []
    for i, item in enumerate(data["steps"]):
        line = located.lines.get(("steps", i), 1)
        where = f"{located.source}:{line}: steps[{i}]"
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, dict) or len(item) != 1:
            raise RunbookError(f"{where}: a step is one of {', '.join(STEP_KINDS)}, written "
                               "`- up` or `- traffic: {requests: 100}` (one key per step)")
        (kind, params), = item.items()
        if kind not in STEP_KINDS:
            raise RunbookError(f"{where}: unknown step {kind!r}; steps: {', '.join(STEP_KINDS)}")
        if params is None:
            params = {}
        elif kind == "wait" and isinstance(params, (int, float)) and not isinstance(params, bool):
            params = {"seconds": params}
        elif kind == "fault" and isinstance(params, str):
            params = {"kind": params}
        if not isinstance(params, dict):
            raise RunbookError(f"{where}.{kind}: expected a mapping of parameters "
                               f"(got {params!r})")
        if "step" in params:
            raise RunbookError(f"{where}.{kind}.step: unknown key")
        out.append({"step": kind, **params})
    return {**data, "steps": out}


def parse_runbook(text: str, source: str = "<string>") -> Runbook:
    """Validate runbook YAML text; raises RunbookError naming `source:line` and the field."""
    root = compose_mapping(text, source, RunbookError)
    if root is None:
        raise RunbookError(f"{source}:1: a runbook must be a YAML mapping (name:, inventory:, "
                           "steps:)", hint="see runbooks/smoke.yaml")
    located = Located(source)
    try:
        data = located.build(root, ())
    except InventoryError as exc:
        raise RunbookError(exc.message, hint=exc.hint) from None
    data = _normalise_steps(data, located)
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        raise _runbook_error(exc, located, data.get("inventory")) from None


def load_runbook(path: Union[str, Path]) -> Runbook:
    """Read and validate a runbook file."""
    return parse_runbook(read_text(path), source=str(path))


def read_text(path: Union[str, Path]) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunbookError(f"{p}: cannot read runbook: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RunbookError(f"{p}: not a text file (UTF-8 expected)") from None


def _runbook_error(exc: ValidationError, located: Located, inventory: Any) -> RunbookError:
    errors = _relevant(exc.errors(), inventory)
    messages = [_describe(err, located) for err in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        messages.append(f"... and {len(errors) - MAX_ERRORS} more")
    return RunbookError("invalid runbook:\n  " + "\n  ".join(messages),
                        hint="see runbooks/smoke.yaml and runbooks/intercept-outage.yaml")


def _relevant(errors: list[Any], inventory: Any) -> list[Any]:
    """`inventory` is a path or {lab: ...}: report the branch the user evidently meant."""
    out = []
    wanted = "InventoryRef" if isinstance(inventory, dict) else "str"
    for err in errors:
        loc = tuple(err["loc"])
        if loc[:1] == ("inventory",) and len(loc) > 1:
            if loc[1] != wanted:
                continue
            err = {**err, "loc": (loc[0], *loc[2:])}
            if len(loc) == 2:
                err["msg"] = INVENTORY_SHAPE
                err["type"] = "value_error"
        out.append(err)
    return out


def _describe(err: Any, located: Located) -> str:
    loc: PathKey = tuple(err["loc"])
    problem = (err.get("ctx") or {}).get("error")
    if isinstance(problem, _Problem):
        loc, msg = problem.path, str(problem)
    else:
        msg = _message(err)
    line = nearest_line(loc, located.lines)
    return f"{located.source}:{line}: {dotted(loc) or 'top level'}: {msg}"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or kind == "value_error" else f" (got {got!r})"
    hint = VALID_HINTS.get(kind, "")
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get((err.get("ctx") or {}).get("pattern", ""), "")
    return msg + shown + (f"; expected {hint}" if hint else "")
