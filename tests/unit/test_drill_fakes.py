"""Fake ledger reports and drill results for the drill and report unit tests (no I/O)."""

from __future__ import annotations

from labctl.drill.model import Check, CleanupResult, DrillResult, StepResult
from labctl.verify import ledger as L
from labctl.verify.logparse import LogRecord

ONLINE_ADDR, COPY_ADDR = "10.78.1.10", "10.79.1.10"


def record(addr: str, t: float, uri: str = "/", status: int = 200) -> LogRecord:
    return LogRecord(t, addr, "GET", uri, status, 10, 100, None, 0.001, int(t), 1)


def ledger(online: int, copies: int, daemons: tuple[L.DaemonStats, ...] = ()
           ) -> L.LedgerReport:
    """A real ledger over `online` requests of which `copies` reached the target."""
    on = [record(ONLINE_ADDR, 1000.0 + i, f"/p{i}") for i in range(online)]
    tg = [record(COPY_ADDR, 1000.5 + i, f"/p{i}") for i in range(copies)]
    inp = L.LedgerInput(online={"online": on}, target=tg, allowed_sources=["10.79.1.0/24"],
                        daemons=daemons)
    return L.build(inp)


def tcpcopy(**counters: int) -> L.DaemonStats:
    return L.DaemonStats("online", "tcpcopy", "running", dict(counters))


def result(passed: bool = True) -> DrillResult:
    ok = ledger(100, 100, (tcpcopy(requests_sent=100, captured=900),))
    lossy = ledger(100, 60, (tcpcopy(requests_sent=100, sessions_no_synack=30),))
    steps = [
        StepResult(1, "up", "up", "ok", 1_700_000_000.0, 12.0, {"changes": 3}),
        StepResult(2, "traffic", "traffic: 100 mixed requests", "ok", 1_700_000_012.0, 2.0,
                   {"sent": 100, "ok": 100}),
        StepResult(3, "verify", "verify (expect pass)", "ok" if passed else "failed",
                   1_700_000_014.0, 3.0, {"copy ratio": 1.0},
                   [Check("verdict", passed, "ledger verdict PASS (expected pass)")],
                   ledger=ok),
        StepResult(4, "verify", "verify (expect fail)", "ok", 1_700_000_017.0, 3.0, {},
                   [Check("verdict", True, "ledger verdict FAIL (expected fail)")],
                   ledger=lossy),
        StepResult(5, "down", "down", "ok", 1_700_000_020.0, 5.0, {"online": "undid 1"}),
    ]
    return DrillResult("smoke", "A <b>smoke</b> drill | pipes", "runbooks/smoke.yaml",
                       "name: smoke\nsteps: [up]\n", lab="h8x", topology="three-server",
                       inventory="/tmp/inv.yaml", engine={"multiplier": 1},
                       started_at=1_700_000_000.0, finished_at=1_700_000_030.0, steps=steps,
                       cleanup=[CleanupResult("destroy lab", True, "lab h8x destroyed")])
