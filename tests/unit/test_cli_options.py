"""Safety knobs read from the environment are bounded and named when wrong (issue 13 review:
`LABCTL_DEADMAN_SECONDS=inf` was accepted)."""

from __future__ import annotations

import pytest

from labctl.cli import main


@pytest.mark.parametrize("value", ["inf", "1e9", "0", "abc"])
def test_a_dead_man_outside_its_bounds_is_refused_naming_the_option(
        value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABCTL_DEADMAN_SECONDS", value)
    with pytest.raises(SystemExit) as exc:
        main(["up", "inventories/staging.yaml", "--dry-run"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--deadman" in err and "LABCTL_DEADMAN_SECONDS" in err, err
