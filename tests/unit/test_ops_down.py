"""labctl.up.down: journal-lost sweep by tags, down of a journal, second down is a no-op."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.facts.iptables import parse_iptables_save
from labctl.hosts.journal import new_journal
from labctl.inventory.load import load_inventory
from labctl.transport.fake import FakeTransport
from labctl.up import down as ops_down

ROOT = Path(__file__).resolve().parents[2]
SAVE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:LABCTL-demo - [0:0]
:LABCTL-other - [0:0]
-A INPUT -m comment --comment "labctl:demo:drop-chain" -j LABCTL-demo
-A INPUT -s 10.0.0.1/32 -j ACCEPT
-A INPUT -j LABCTL-other
-A LABCTL-demo -s 10.77.1.20/32 -p tcp --sport 80 -m comment --comment "labctl:demo:x" -j DROP
COMMIT
"""


def test_sweep_argvs_remove_only_this_labs_objects() -> None:
    argvs = ops_down.sweep_iptables_argvs(parse_iptables_save(SAVE), "demo")
    assert argvs == [
        ["iptables", "-t", "filter", "-D", "INPUT", "-m", "comment", "--comment",
         "labctl:demo:drop-chain", "-j", "LABCTL-demo"],
        ["iptables", "-t", "filter", "-F", "LABCTL-demo"],
        ["iptables", "-t", "filter", "-X", "LABCTL-demo"],
    ]


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LABCTL_STATE_DIR", str(tmp_path))
    return load_inventory(ROOT / "inventories/staging.yaml")


def _base(name: str) -> FakeTransport:
    fake = FakeTransport(name).on_prefix(["mkdir"]).on_prefix(["rm", "-rf"])
    fake.on_prefix(["cat"], exit_code=1, stderr="cat: x: No such file or directory")
    return fake


def test_journal_lost_sweeps_tags(inv) -> None:  # type: ignore[no-untyped-def]
    spec = inv.targets[0]
    fake = _base(spec.name)
    fake.on(list(ops_down.TAGGED_ROUTES), stdout="")  # after the flush (later rules win)
    fake.on(list(ops_down.TAGGED_ROUTES), stdout="192.168.50.0/24 via 192.168.44.136\n", times=1)
    fake.on(["ip", "-4", "route", "flush", "table", "all", "proto", "252"])
    fake.on(["iptables-save"], stdout="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    done = ops_down.down_host(fake, inv, spec)
    assert "journal lost" in done.summary and done.changed and not done.leftovers


def test_nothing_anywhere_is_a_noop(inv) -> None:  # type: ignore[no-untyped-def]
    spec = inv.targets[0]
    fake = _base(spec.name)
    fake.on(list(ops_down.TAGGED_ROUTES), stdout="")
    fake.on(["iptables-save"], stdout="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    done = ops_down.down_host(fake, inv, spec)
    assert done.summary.startswith("nothing to do") and not done.changed
    assert not [c for c in fake.commands if c[:2] == ("ip", "-4") and "flush" in c]


def test_down_of_a_clean_journal_says_already_down(inv) -> None:  # type: ignore[no-untyped-def]
    spec = inv.targets[0]
    j = new_journal(inv.lab, spec.name, "r1", now=1.0)
    j.state, j.rolled_back_by = "rolled_back", "deadman"
    fake = _base(spec.name)
    fake.on(["cat", f"{inv.remote_dir(spec)}/journal.json"], stdout=j.to_json())
    fake.on(list(ops_down.TAGGED_ROUTES), stdout="")
    fake.on(["iptables-save"], stdout="")
    done = ops_down.down_host(fake, inv, spec)
    assert "already down" in done.summary and "dead-man" in done.summary


def test_down_of_a_journal_with_nothing_applied_marks_it_down(inv) -> None:  # type: ignore[no-untyped-def]
    """An `up` killed after writing its journals but before its first change leaves them
    `applying` with nothing in place; `down` must mark them down, or the next `up` is refused
    ("not down") although there is nothing to undo."""
    spec = inv.targets[0]
    path = f"{inv.remote_dir(spec)}/journal.json"
    j = new_journal(inv.lab, spec.name, "r1", now=1.0)
    j.state = "applying"
    fake = _base(spec.name)
    fake.on(["cat", path], stdout=j.to_json())
    fake.on(list(ops_down.TAGGED_ROUTES), stdout="")
    fake.on(["iptables-save"], stdout="")
    done = ops_down.down_host(fake, inv, spec)
    assert "nothing to do" in done.summary and not done.error
    written = fake.files.get(path)
    assert written is not None and json.loads(written)["state"] == "down"
