"""`--help` of every command and group reads as people expect (issue 12): a flag shows no
`<bool>`, a positional argument is `INVENTORY` (never `{inventory}`), and every line fits 80
columns."""

from __future__ import annotations

import re

import pytest
import typer.main

from labctl.cli import app as cli_app
from labctl.cli import main


def command_paths() -> list[list[str]]:
    """Every command and group under `labctl`, as argv prefixes ([] is the root)."""
    paths: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(cli_app.app), [])
    return paths


PATHS = command_paths()


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"", "up", "plan", "status", "down", "verify", "drill", "lab", "lab up"} <= names


def render_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "labctl")
def test_help_has_no_bool_placeholders_nor_braced_arguments(
        path: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = render_help(path, capsys)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert f"labctl {' '.join(path)}".rstrip() in usage, usage
    assert "<bool>" not in text, text
    assert "range>" not in text, text           # `--parallel N`, not `<int range>`
    assert not re.search(r"\{[A-Za-z_][\w-]*\}", text), text   # `{inventory}`, `{runbook}`
    assert "--help " in text and "Show this message" in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_positional_arguments_are_upper_case_in_usage_and_panel(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    up = render_help(["up"], capsys)
    assert "Usage: labctl up [OPTIONS] INVENTORY" in up, up
    assert re.search(r"\* +INVENTORY +Inventory YAML file", up), up
    assert re.search(r"--dry-run +Show the plan", up), up      # a flag: no value column
    assert re.search(r"--deadman +SECONDS \[1.0<=x", up), up  # what the value is, its range
    assert re.search(r"--plan +FILE", up), up
    assert re.search(r"--parallel +N \[1<=x<=1024\]", up), up
    status = render_help(["status"], capsys)
    assert "Usage: labctl status [OPTIONS] [INVENTORY]" in status, status
    drill = render_help(["drill"], capsys)
    assert "Usage: labctl drill [OPTIONS] RUNBOOK" in drill, drill


def test_a_missing_argument_is_named_as_in_the_usage_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan"])
    assert exc.value.code == 2
    assert "Missing argument 'INVENTORY'" in capsys.readouterr().err
