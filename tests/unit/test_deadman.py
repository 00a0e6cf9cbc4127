"""labctl.up.deadman: arming argv per mechanism, confirm over a fresh transport, cancel waits."""

from __future__ import annotations

import pytest

from labctl.errors import RemoteError
from labctl.transport.fake import FakeTransport
from labctl.up import deadman

HDIR = "/s/demo/target"
PYZ = HDIR + "/labctl-engine.pyz"


def test_detached_arm_argv() -> None:
    argv = deadman.arm_argv(PYZ, HDIR, "demo", 30, systemd=False)
    assert argv[:3] == ["python3", PYZ, "rollback"]
    assert argv[argv.index("--after") + 1] == "30"
    assert argv[-1] == "--detach" and HDIR + "/deadman.pid" in argv
    assert HDIR + "/journal.json" in argv and HDIR + "/deadman.confirmed" in argv


def test_systemd_arm_argv_fires_rollback_after_timer() -> None:
    argv = deadman.arm_argv(PYZ, HDIR, "demo", 30, systemd=True)
    assert argv[:3] == ["systemd-run", "--unit", "labctl-demo-deadman"]
    assert "--on-active=30s" in argv
    assert argv[-2:] == ["--after", "0"] and "--detach" not in argv


def test_arm_clears_old_confirmation_first() -> None:
    fake = FakeTransport("target").on(["rm", "-f", HDIR + "/deadman.confirmed"])
    fake.on_prefix(["python3", PYZ, "rollback"], stdout="4242\n")
    rec = deadman.arm(fake, PYZ, HDIR, "demo", 30, systemd=False, now=lambda: 5.0)
    assert [c[0] for c in fake.commands] == ["rm", "python3"]
    assert rec.mechanism == "detached" and rec.armed_at == 5.0 and rec.after == 30


def _armed_fake(alive_checks: int) -> FakeTransport:
    fake = FakeTransport("target")
    fake.on(["touch", HDIR + "/deadman.confirmed"])
    fake.on(["cat", HDIR + "/deadman.pid"], stdout="4242\n")
    fake.on(["cat", "/proc/4242/cmdline"], exit_code=1)
    fake.on(["cat", "/proc/4242/cmdline"], stdout="python3\0x.pyz\0rollback\0",
            times=alive_checks)
    fake.on(["kill", "-TERM", "4242"])
    return fake


def test_confirm_touches_then_kills_and_waits() -> None:
    fake = _armed_fake(alive_checks=3)
    rec = deadman.DeadmanRecord(
        "detached", 30, 1.0, HDIR + "/deadman.confirmed", HDIR + "/deadman.pid")
    out = deadman.confirm(fake, rec, now=lambda: 9.0, sleep=lambda s: None)
    assert out.confirmed_at == 9.0
    assert fake.commands[0] == ("touch", HDIR + "/deadman.confirmed")
    assert ("kill", "-TERM", "4242") in fake.commands
    assert not deadman.is_armed(fake, out)


def test_cancel_times_out_with_a_hint() -> None:
    fake = _armed_fake(alive_checks=1000)
    rec = deadman.DeadmanRecord("detached", 30, 1.0, HDIR + "/deadman.confirmed",
                                HDIR + "/deadman.pid")
    ticks = iter(range(1000))
    with pytest.raises(RemoteError, match="did not exit"):
        deadman.cancel(fake, rec, wait=5, sleep=lambda s: None, clock=lambda: next(ticks))


def test_systemd_cancel_stops_timer_and_service() -> None:
    fake = FakeTransport("target").on_prefix(["touch"]).on_prefix(["systemctl", "stop"])
    rec = deadman.DeadmanRecord("systemd", 30, 1.0, "/c", unit="labctl-demo-deadman")
    deadman.cancel(fake, rec)
    assert fake.commands[1:] == [("systemctl", "stop", "labctl-demo-deadman.timer"),
                                 ("systemctl", "stop", "labctl-demo-deadman.service")]
