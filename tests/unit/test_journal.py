"""labctl.hosts.journal: pure transitions, JSON round trip, remote write via put + mv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.hosts import journal as jr
from labctl.model import Change, ChangeKind
from labctl.transport.base import CommandFailed
from labctl.transport.fake import FakeTransport
from labctl.transport.textfile import unwrite_argv

ROUTE = Change(
    host="target", step="route-clientnet", kind=ChangeKind.ROUTE,
    description="route 10.79.1.0/24 via 10.77.1.30",
    apply=(("ip", "route", "add", "10.79.1.0/24", "via", "10.77.1.30", "proto", "252"),),
    undo=(("ip", "route", "del", "10.79.1.0/24", "via", "10.77.1.30", "proto", "252"),),
    probe=("ip", "route", "show", "10.79.1.0/24", "proto", "252"), guarded=True,
)


def test_entry_lifecycle_and_round_trip() -> None:
    j = jr.new_journal("demo", "target", "run1", now=100.0)
    e = j.plan_entry(ROUTE, jr.Snapshot("routes", "rules"), now=101.0)
    assert e.status == "planned" and e.seq == 1 and e.guarded
    assert j.in_place() == [e]
    j.mark(e, "applied", 102.0)
    back = jr.Journal.from_json(j.to_json())
    assert back == j
    assert back.entries[0].snapshot.routes == "routes"
    j.mark(e, "undone", 103.0, "undone")
    assert j.in_place() == [] and j.is_clean and e.undone_at == 103.0


def test_from_json_tolerates_keys_written_by_the_host_rollback() -> None:
    j = jr.new_journal("demo", "target", "run1", now=1.0)
    raw = json.loads(j.to_json())
    raw["rolled_back_by"] = "deadman"
    raw["future_key"] = 1
    assert jr.Journal.from_json(json.dumps(raw)).rolled_back_by == "deadman"


def test_from_json_garbage_is_a_clear_error() -> None:
    with pytest.raises(jr.RemoteError, match="x:/j: not a readable labctl journal"):
        jr.Journal.from_json("[1, 2", where="x:/j")


def test_write_remote_is_one_atomic_command_with_the_json_on_stdin() -> None:
    fake = FakeTransport("target")
    j = jr.new_journal("demo", "target", "run1", now=1.0)
    jr.write_remote(fake, "/s/demo/target/journal.json", j)
    (call,) = fake.calls
    tmp, path = unwrite_argv(call.argv) or ("", "")
    assert tmp.startswith("/s/demo/target/journal.json.tmp-")
    assert path == "/s/demo/target/journal.json"
    assert call.argv[:2] == ("sh", "-c") and 'cat > "$1" && mv -f "$1" "$2"' in call.argv[2]
    assert jr.Journal.from_json(call.stdin or "") == j
    assert jr.Journal.from_json(fake.files[path].decode()) == j


def test_write_remote_failure_removes_the_temp_file_and_raises() -> None:
    fake = FakeTransport("target").on_prefix(["sh", "-c"], exit_code=1, stderr="disk full")
    fake.on_prefix(["rm", "-f"])
    with pytest.raises(CommandFailed, match="disk full"):
        jr.write_remote(fake, "/s/j.json", jr.new_journal("demo", "target", "run1", now=1.0))
    assert fake.commands[-1][:2] == ("rm", "-f") and fake.commands[-1][2].startswith(
        "/s/j.json.tmp-")


def test_read_remote_missing_is_none() -> None:
    fake = FakeTransport("t").on(["cat", "/j"], exit_code=1,
                                 stderr="cat: /j: No such file or directory")
    assert jr.read_remote(fake, "/j") is None


def test_local_copy_and_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    j = jr.new_journal("demo", "target", "run1", now=1.0)
    path = jr.save_local(j)
    assert path == tmp_path / "demo" / "target.journal.json"
    assert jr.load_local("demo", "target") == j
    assert jr.load_local("demo", "nohost") is None
    jr.save_record(jr.LabRecord("demo", "/inv.yaml", "lab: demo\n", ["target"]))
    assert jr.known_labs() == ["demo"]
    rec = jr.load_record("demo")
    assert rec is not None and rec.hosts == ["target"]


def test_snapshot_records_failures_as_text() -> None:
    fake = FakeTransport("t").on(["ip", "route", "show", "table", "all"], stdout="r\n")
    fake.on(["iptables-save"], exit_code=127, stderr="not found")
    snap = jr.take_snapshot(fake)
    assert snap.routes == "r\n" and snap.iptables.startswith("# iptables-save failed (127)")
