"""The state_dir check (labctl.up.statedir): owned by root or the connecting user, not group/world-
writable; the `stat` fact it reads."""

from __future__ import annotations

import pytest

from labctl.facts.base import FactParseError
from labctl.facts.paths import PathStat, parse_stats
from labctl.model import Severity
from labctl.transport.base import Result
from labctl.up.checks import run_checks
from labctl.up.statedir import mkdir_argv
from tests.unit.checks.fired import ids
from tests.unit.checks_facts import (
    healthy,
    inventory,
    operator,
    with_host,
)


def test_state_dir_owned_by_someone_else_or_writable_is_an_error() -> None:
    inv = inventory()
    hdir = inv.remote_dir(inv.host("assistant"))
    other = (PathStat("/var/lib/labctl", 0, "root", 0o755, "directory"),
             PathStat(hdir, 1001, "mallory", 0o700, "directory"))
    found = [f for f in run_checks(inv, with_host(healthy(inv), "assistant", state_dirs=other),
                                   operator()) if f.id == "state_dir.unsafe"]
    ids(found)
    assert len(found) == 1 and found[0].severity is Severity.ERROR
    assert found[0].host == "assistant"
    assert f"{hdir} is owned by mallory (uid 1001)" in found[0].message
    assert "owner mallory, mode 0700" in found[0].message
    writable = (PathStat("/var/lib/labctl", 0, "root", 0o1777, "directory"),)
    found = [f for f in run_checks(inv, with_host(healthy(inv), "online1", state_dirs=writable),
                                   operator()) if f.id == "state_dir.unsafe"]
    assert [f.host for f in found] == ["online1"] and "mode 1777" in found[0].message
    # the connecting user's own directory (uid 1000 connecting as uid 1000) is fine
    own = (PathStat("/var/lib/labctl", 1000, "deploy", 0o700, "directory"),)
    quiet = with_host(healthy(inv), "online1", state_dirs=own, uid=1000, sudo=True)
    assert "state_dir.unsafe" not in ids(run_checks(inv, quiet, operator()))
    # unknown owner: a could-not-check warning, not silence
    unknown = with_host(healthy(inv), "target", state_dirs=None,
                        unknown={"state_dirs": "stat not found on the host"})
    msgs = [f.message for f in run_checks(inv, unknown, operator()) if f.id == "facts.unknown"]
    assert any("state_dir: stat not found" in m for m in msgs)


def test_stat_output_parses_existing_paths_and_skips_missing_ones() -> None:
    res = Result("h", ("stat",), 1, "0 root 755 directory|/var/lib/labctl\n"
                 "1001 mal lory 700 directory|/var/lib/my dir\n",
                 "stat: cannot statx '/var/lib/labctl/x': No such file or directory\n")
    with pytest.raises(FactParseError):  # an owner name with a space is not stat's output
        parse_stats(res)
    res = Result("h", ("stat",), 1, "0 root 755 directory|/var/lib/labctl\n"
                 "1001 mallory 2770 directory|/var/lib/my dir\n",
                 "stat: cannot statx '/var/lib/labctl/x': No such file or directory\n")
    got = parse_stats(res)
    assert [(s.path, s.owner, s.mode_text) for s in got] == [
        ("/var/lib/labctl", "root", "0755"), ("/var/lib/my dir", "mallory", "2770")]
    with pytest.raises(FactParseError, match="Permission denied"):
        parse_stats(Result("h", ("stat",), 1, "", "stat: cannot statx 'x': Permission denied\n"))
    assert mkdir_argv("/s/lab/h") == ["mkdir", "-p", "-m", "0700", "/s", "/s/lab", "/s/lab/h"]
