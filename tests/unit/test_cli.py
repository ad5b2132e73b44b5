"""The command line as a newcomer meets it: its help and its version."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from alerts.cli import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"alerts {version('alerts')}"


def test_help_speaks_to_the_user_not_the_developer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "alerts up" in text
    assert "register" not in text  # the module docstring is a note for developers
