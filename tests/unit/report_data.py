"""Report test data built from the fixture logs in tests/fixtures/logs/report/ (no I/O but
reading them): the records, a ledger over them, a verify report and a drill result with plots."""

from __future__ import annotations

from pathlib import Path

from labctl.drill.model import DrillResult
from labctl.report.series import Traffic
from labctl.report.verify import VerifyReport
from labctl.verify import ledger as L
from labctl.verify.logparse import LogFormat, LogRecord, parse_text
from tests.unit.test_drill_fakes import result

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "report"
T0 = 1_800_000_000.0


def records(side: str) -> list[LogRecord]:
    parsed = parse_text((LOGS / f"{side}.log").read_text(encoding="utf-8"), LogFormat("labctl"))
    assert parsed.malformed == 0
    return parsed.records


def daemons(sent: int) -> list[L.DaemonStats]:
    return [L.DaemonStats("online", "tcpcopy", "running",
                          {"captured": 3 * sent, "sessions_created": sent,
                           "requests_sent": sent, "sessions_no_synack": 20}),
            L.DaemonStats("assistant", "intercept", "running",
                          {"captured": 2 * sent, "resp_routed": 2 * sent})]


def ledger(online: list[LogRecord], target: list[LogRecord]) -> L.LedgerReport:
    return L.build(L.LedgerInput(online={"online": online}, target=target,
                                 allowed_sources=["10.79.1.0/24"],
                                 daemons=daemons(len(target))))


def verify_report() -> VerifyReport:
    on, tg = records("online"), records("target")
    return VerifyReport(ledger(on, tg), Traffic(on, tg), "h6u", "inventories/local.yaml",
                        "everything logged since `up` marked the logs", T0 + 61)


def drill_result() -> DrillResult:
    """The fake drill result, its two verify steps holding the first and last 30 s."""
    on, tg = records("online"), records("target")
    r = result()
    r.started_at, r.finished_at = T0 - 10, T0 + 70
    halves = [([x for x in on if (x.time or 0) < T0 + 30], [x for x in tg if (x.time or 0)
                                                           < T0 + 30]),
              ([x for x in on if (x.time or 0) >= T0 + 30], [x for x in tg if (x.time or 0)
                                                            >= T0 + 30])]
    for step, start in zip(r.steps, (-10, -8, 30, 61, 65)):
        step.started_at = T0 + start
    for step, (o, t) in zip((r.steps[2], r.steps[3]), halves):
        step.records = (o, t)
        step.ledger = ledger(o, t)
    return r
