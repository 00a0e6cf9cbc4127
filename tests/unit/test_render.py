"""labctl.cli.render.ops: tables carry the facts a user needs; JSON is plain."""

from __future__ import annotations

import io
import json

from rich.console import Console

from labctl.cli.render import ops as render
from labctl.hosts.daemons import DaemonStatus
from labctl.model import Change, ChangeKind, DaemonLaunch, Finding, Plan, Readiness, Severity
from labctl.plain import dumps
from labctl.up.apply import StepOutcome
from labctl.up.down import DownReport, HostDown, HostStatus, StatusReport
from labctl.up.run import UpReport


def text(renderable: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(renderable)
    return buf.getvalue()


def test_up_report_shows_findings_plan_steps_and_verdict() -> None:
    change = Change("target", "route-x", ChangeKind.ROUTE, "route x via a", (("ip",),),
                    (("ip",),), guarded=True)
    rep = UpReport("demo", findings=[Finding("route.operator", Severity.ERROR, "target",
                                             "cuts ssh", "pick another", refusal=True)],
                   plan=Plan("demo", (change,)), refused=True)
    out = text(render.up_renderable(rep))
    assert "error (refusal)" in out and "route.operator" in out and "pick another" in out
    assert "route x via a" in out and "dead-man" in out
    assert "refused: nothing was changed" in out
    rep2 = UpReport("demo", plan=Plan("demo", (change,)),
                    steps=[StepOutcome("target", "route-x", "route x via a", "applied")])
    assert "1 change(s) made" in text(render.up_renderable(rep2))


def test_status_and_down_tables() -> None:
    d = DaemonStatus("tcpcopy", True, 42, 12.0, "running", {"captured": 7})
    st = StatusReport("demo", [HostStatus("online", "up", entries={"applied": 2}, daemons=[d],
                                          tagged_routes=["10.79.1.0/24 via 10.77.1.30"])])
    out = text(render.status_renderable(st))
    assert "captured=7" in out and "12s" in out and "applied=2" in out and "10.79.1.0/24" in out
    down = DownReport("demo", [HostDown("online", "nothing to do: already down")])
    assert "already down" in text(render.down_renderable(down))
    left = DownReport("demo", [HostDown("t", "undid 1", leftovers=["route: x"])])
    assert "need attention" in text(render.down_renderable(left))


def test_json_is_plain() -> None:
    rep = UpReport("demo", findings=[Finding("a", Severity.WARN, "h", "m")])
    data = json.loads(dumps(rep))
    assert data["findings"][0]["severity"] == "warn" and data["lab"] == "demo"


def test_a_daemon_command_line_is_printed_whole_on_a_narrow_terminal() -> None:
    """The plan table folds long cells; each daemon's full command line is printed below it,
    unbroken, so the `-x …@MAC` flag can be read and copied at any terminal width."""
    flag = "10.0.0.1:80-10.0.0.2:80@22:fc:cd:79:6e:88"
    launch = DaemonLaunch("tcpcopy", ("-x", flag, "-s", "10.0.0.3"), "/run/t.pid",
                          "/run/t.stats", "/run/t.log", Readiness("connected"))
    change = Change("online", "daemon:tcpcopy", ChangeKind.DAEMON, "start tcpcopy",
                    (("tcpcopy",),), (("kill",),), daemon=launch)
    rep = UpReport("demo", plan=Plan("demo", (change,)), dry_run=True)
    buf = io.StringIO()
    Console(file=buf, width=50, color_system=None).print(render.up_renderable(rep),
                                                         soft_wrap=True)
    lines = buf.getvalue().splitlines()
    assert f"[online] tcpcopy -x {flag} -s 10.0.0.3" in lines
    assert all(len(line) <= 50 for line in lines if "tcpcopy -x" not in line)
