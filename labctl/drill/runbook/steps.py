"""The runbook model (pydantic, frozen): the step kinds and their parameters, the fault
kinds and their endings, engine overrides, `Runbook` itself. Parsing YAML into it: `parse`."""


from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from engine.netem import NetemSpec, check_spec
from labctl.errors import UsageError
from labctl.inventory.yamlsource import PathKey
from labctl.lab.traffic import parse_sizes

MAX_ERRORS = 8
RUNBOOK_NAME = r"^[a-z][a-z0-9-]{0,31}$"
LAB_NAME = r"^[a-z][a-z0-9]{0,7}$"
BUCKETS = ("capture", "session", "target", "path", "unexplained")
#: Each fault and the kind that ends it (cleanup ends whatever is still active).
FAULT_PAIRS = {"stop-intercept": "start-intercept", "drop": "end-drop",
               "stall-target": "resume-target", "remove-route": "restore-route",
               "netem": "end-netem"}
#: Each ending kind and the fault it ends (`start-intercept` -> `stop-intercept`).
FAULT_ENDS = {end: start for start, end in FAULT_PAIRS.items()}
FAULT_KINDS = (*FAULT_PAIRS, *FAULT_PAIRS.values())
WAIT_CONDITIONS = ("traffic-done", "copies-settled", "tcpcopy-connected")
STEP_KINDS = ("up", "traffic", "wait", "fault", "verify", "compare", "down")
#: Steps and faults that need the local lab (they act inside its namespaces).
LAB_ONLY_FAULTS = ("stall-target", "resume-target")
#: The engine's netem flags and the netem fault's fields.
NETEM_FIELDS = {"--netem-delay": "delay_ms", "--netem-jitter": "jitter_ms",
                "--netem-loss": "loss_percent", "--netem-reorder": "reorder_percent",
                "--netem-rate": "rate_kbit"}


INVENTORY_SHAPE = ("expected an inventory file path, or {lab: {name: NAME, topology: "
                   "three-server|two-server}} to build the local lab for the drill")
PATTERN_HINTS = {LAB_NAME: "a lowercase letter, then up to 7 lowercase letters or digits",
                 RUNBOOK_NAME: "a lowercase letter, then up to 31 lowercase letters, digits, '-'"}


class FieldProblem(ValueError):
    """A cross-field error that knows the path it is about (mapped to a line)."""

    def __init__(self, path: PathKey, message: str):
        super().__init__(message)
        self.path = path


class RunbookError(UsageError):
    """A runbook that does not validate; the message names file, line and field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LabRef(_Frozen):
    """Build this local lab for the drill and destroy it afterwards. `targets: 2` adds
    `target2`: the lab's inventory then lists target (baseline) and target2 (candidate), what
    a `compare` step needs (three-server only)."""

    name: str = Field(pattern=LAB_NAME)
    topology: Literal["three-server", "two-server"] = "three-server"
    targets: StrictInt = Field(default=1, ge=1, le=2)

    @model_validator(mode="after")
    def _targets_need_an_assistant(self) -> LabRef:
        if self.targets == 2 and self.topology != "three-server":
            raise ValueError("targets: 2 needs topology: three-server (intercept on the "
                             "assistant captures the replies of both targets)")
        return self


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
                  "restore-route", "end-drop", "resume-target", "netem", "end-netem"]
    #: drop: percentage of copied packets dropped on the online host(s).
    percent: Optional[float] = Field(default=None, gt=0, le=100)
    #: drop: one online host by inventory name (default: all of them).
    host: Optional[str] = None
    #: remove-route: the client network routed via the assistant (default: the first).
    network: Optional[str] = None
    #: netem: network conditions on the copy path to the target (never on production traffic)
    on: Literal["target"] = "target"
    delay_ms: float = Field(default=0, ge=0, le=60_000)
    jitter_ms: float = Field(default=0, ge=0, le=60_000)
    loss_percent: float = Field(default=0, ge=0, le=100)
    reorder_percent: float = Field(default=0, ge=0, le=100)
    rate_kbit: float = Field(default=0, ge=0, le=100e6)
    #: netem: `tc` (a netem qdisc on the target, where its kernel has one), `engine` (tcpcopy
    #: shapes its copies: any kernel), or `auto` (tc when the target has it, else engine)
    mechanism: Literal["auto", "engine", "tc"] = "auto"

    def netem_spec(self) -> NetemSpec:
        return NetemSpec(self.delay_ms, self.jitter_ms, self.loss_percent, self.reorder_percent,
                         self.rate_kbit)

    @model_validator(mode="after")
    def _params(self) -> FaultStep:
        shaped = self.netem_spec().active or self.mechanism != "auto"
        if self.kind != "netem" and shaped:
            raise ValueError(f"delay_ms, jitter_ms, loss_percent, reorder_percent, rate_kbit "
                             f"and mechanism apply to netem faults only, not {self.kind}")
        if self.kind == "netem":
            if not self.netem_spec().active:
                raise ValueError("a netem fault needs a condition: delay_ms, jitter_ms, "
                                 "loss_percent, reorder_percent or rate_kbit")
            bad = check_spec(self.netem_spec())
            if bad is not None:
                raise ValueError(f"{NETEM_FIELDS[bad[0]]}: {bad[1]}")
        if self.kind == "drop" and self.percent is None:
            raise ValueError("a drop fault needs percent (of copied packets), e.g. 10")
        if self.kind != "drop" and (self.percent is not None or self.host is not None):
            raise ValueError(f"percent and host apply to drop faults only, not {self.kind}")
        if self.kind != "remove-route" and self.network is not None:
            raise ValueError(f"network applies to remove-route only, not {self.kind}")
        return self

    def title(self) -> str:
        if self.kind == "netem":
            return f"fault: netem {self.netem_spec().describe()} on the copies to the {self.on}"
        extra = f" {self.percent:g} %" if self.percent is not None else ""
        return f"fault: {self.kind}{extra}" + (f" on {self.host}" if self.host else "")


class VerifyStep(_Frozen):
    """Run the loss ledger over the traffic since the previous verify (or since `up`)."""

    step: Literal["verify"] = "verify"
    #: the ledger's verdict expected; `any`: not checked, the bounds below are the test
    expect: Literal["pass", "fail", "any"] = "pass"
    min_ratio: Optional[float] = Field(default=None, ge=0)
    max_ratio: Optional[float] = Field(default=None, ge=0)
    #: bucket -> the least share (0..1) of the missing copies it must explain.
    attribution: dict[str, float] = Field(default_factory=dict)
    #: Wait first until the target's log stayed quiet this long (0: verify at once).
    settle: float = Field(default=2.0, ge=0, le=60)
    settle_timeout: float = Field(default=60.0, gt=0, le=600)
    #: [low, high] ms: the target's median response time as tcpcopy measured it over this
    #: verify's window must lie in it (a netem delay shows here, not in the target's log)
    target_p50_ms: Optional[tuple[float, float]] = None

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
        if self.target_p50_ms is not None and not \
                0 <= self.target_p50_ms[0] <= self.target_p50_ms[1]:
            raise ValueError(f"target_p50_ms {list(self.target_p50_ms)}: expected [low, high] "
                             "with 0 <= low <= high")
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
                raise FieldProblem(("steps", i, "traffic"), "traffic steps need the local lab "
                               "(inventory: {lab: {name: ...}}); with a real inventory the "
                               "traffic is the online server's own")
            if isinstance(step, FaultStep) and step.kind in LAB_ONLY_FAULTS:
                raise FieldProblem(("steps", i, "fault", "kind"),
                               f"{step.kind} works in the local lab only")
        return self
