"""`labctl drill` refuses bad runbooks with exit 2 before anything is built or touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runbooks"


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


def test_impossible_order_exits_2_naming_the_step(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    path = FIXTURES / "order-verify-before-up.yaml"
    assert _run(["drill", str(path), "--report-dir", str(tmp_path / "r")]) == 2
    assert "step 1 (verify (expect pass)): needs the copy setup up" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_lab_name_and_invalid_runbook_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    good = Path(__file__).resolve().parent.parent.parent / "runbooks" / "smoke.yaml"
    assert _run(["drill", str(good), "--lab-name", "Bad_Name"]) == 2
    assert "--lab-name 'Bad_Name'" in capsys.readouterr().err
    assert _run(["drill", str(FIXTURES / "bad-step-kind.yaml")]) == 2
    assert "unknown step 'explode'" in capsys.readouterr().err
