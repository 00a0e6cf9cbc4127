"""engine.intercept flag parsing: one-line errors naming the flag, exit code 2."""

from __future__ import annotations

import pytest

from engine.intercept import UsageError, main, parse_args


def test_defaults_and_flags() -> None:
    opts = parse_args(["-i", "eth0,eth1", "-F", "tcp and src port 80", "-p", "4000",
                       "--key-file", "/k", "--stats-interval", "0.5", "-d", "-P", "/p"])
    assert opts is not None
    assert opts.interfaces == ["eth0", "eth1"] and opts.port == 4000 and opts.daemon
    assert opts.bind == "0.0.0.0" and opts.key_file == "/k" and opts.stats_interval == 0.5


@pytest.mark.parametrize(("argv", "flag"), [
    (["-p", "80"], "-F"),
    (["-F", "tcp", "-p", "70000"], "-p"),
    (["-F", "tcp", "-b", "nope"], "-b"),
    (["-F", "tcp", "--stats-interval", "0"], "--stats-interval"),
    (["-F", "tcp", "-i", "any"], "-i"),
    (["-F", "tcp", "--bogus"], "--bogus"),
    (["-F", "tcp", "-t", "5"], "-t"),
])
def test_bad_flags_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        parse_args(argv)


def test_main_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--bogus" in err
    assert main(["-v"]) == 0 and "intercept version:" in capsys.readouterr().out
    assert main(["-h"]) == 0 and "-F/--filter" in capsys.readouterr().out
