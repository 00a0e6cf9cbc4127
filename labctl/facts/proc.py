"""Kernel knobs read from /proc/sys in one round trip: ip_forward, conntrack, rp_filter.

`grep -r -H . <files and dirs> --include=NAME...` prints `path:value` for every file that exists
and reports missing ones on stderr (exit 2) - so a host without nf_conntrack (no
/proc/sys/net/netfilter/nf_conntrack_*) still yields its other values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from labctl.facts.base import NOT_FOUND, Fact, FactParseError
from labctl.transport.base import Result

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
CT_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
CT_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
CONF_DIR = "/proc/sys/net/ipv4/conf"


@dataclass(frozen=True)
class Conntrack:
    """`loaded=False` when the nf_conntrack files are absent (module not loaded)."""

    loaded: bool
    count: int = 0
    max: int = 0

    @property
    def usage(self) -> float:
        return self.count / self.max if self.max else 0.0


@dataclass(frozen=True)
class ProcValues:
    ip_forward: Optional[int]
    conntrack: Conntrack
    #: interface name (plus "all" and "default") -> rp_filter value
    rp_filter: dict[str, int] = field(default_factory=dict)

    def effective_rp_filter(self, ifname: str) -> Optional[int]:
        """The kernel applies max(all, <interface>)."""
        if ifname not in self.rp_filter:
            return None
        return max(self.rp_filter.get("all", 0), self.rp_filter[ifname])


def parse_proc_values(result: Result) -> ProcValues:
    if result.exit_code == NOT_FOUND:
        raise FactParseError("grep not found on the host")
    if result.exit_code not in (0, 2) or not result.stdout.strip():
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise FactParseError(f"cannot read /proc/sys: {tail}")
    values: dict[str, int] = {}
    for line in result.stdout.splitlines():
        path, sep, raw = line.partition(":")
        if not sep:
            continue
        try:
            values[path] = int(raw.strip())
        except ValueError:
            raise FactParseError(f"{path}: expected a number, got {raw.strip()!r}") from None
    rp = {
        path[len(CONF_DIR) + 1 : -len("/rp_filter")]: v
        for path, v in values.items()
        if path.startswith(CONF_DIR + "/") and path.endswith("/rp_filter")
    }
    if CT_COUNT in values and CT_MAX in values:
        conntrack = Conntrack(True, values[CT_COUNT], values[CT_MAX])
    else:
        conntrack = Conntrack(False)
    return ProcValues(values.get(IP_FORWARD), conntrack, rp)


PROC_VALUES = Fact(
    "proc_values",
    ("grep", "-r", "-H", ".", IP_FORWARD, CT_COUNT, CT_MAX, CONF_DIR,
     "--include=rp_filter", "--include=ip_forward", "--include=nf_conntrack_count",
     "--include=nf_conntrack_max"),
    parse_proc_values,
)
