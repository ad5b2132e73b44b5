"""The command line as a newcomer meets it: its help and its version."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from alerts.cli import (
    EXIT_REFUSED,
    build_parser,
    confirmed,
    main,
    plural,
    port_number,
    positive_int,
    region_label,
)


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


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("alerts",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action | None]]:
    """Every parser of the tree with each of its own arguments (None for the parser)."""
    yield path, parser, None
    for action in parser._actions:
        yield path, parser, action
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def test_every_command_option_and_argument_has_help_text() -> None:
    missing: list[str] = []
    for path, _command, action in _commands(build_parser()):
        if action is None:
            continue
        if isinstance(action, argparse._SubParsersAction):
            # a command's help is the line its parent's --help lists it with
            described = {choice.dest: choice.help for choice in action._choices_actions}
            missing += [
                f"{' '.join(path)} {name}" for name in action.choices if not described.get(name)
            ]
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_the_walk_sees_the_whole_tree() -> None:
    """The help test is only as good as its walk: it reaches the deepest commands."""
    paths = {" ".join(path) for path, _command, action in _commands(build_parser()) if not action}
    assert {
        "alerts sources remove",
        "alerts subscribers resend-confirmation",
        "alerts webhooks remove",
        "alerts users remove",
        "alerts newsletters preview",
        "alerts bounces serve",
        "alerts schedule list",
    } <= paths


def test_a_bad_command_line_is_one_line_with_argparse_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sources", "remove", "three"])
    assert exit_.value.code == EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "alerts sources remove: argument id: invalid int value: 'three' "
        "(see 'alerts sources remove --help')"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["interests", "preview", "vote", "--days", "0"],
        ["interests", "preview", "vote", "--limit", "-5"],
        ["worker", "--concurrency", "0"],
        ["web", "--port", "70000"],
        ["bounces", "serve", "--port", "http"],
    ],
)
def test_counts_and_ports_are_refused_before_anything_runs(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == EXIT_REFUSED
    [line] = capsys.readouterr().err.splitlines()
    assert "1 or more" in line or "not a port" in line


def test_positive_int_and_port_number() -> None:
    assert positive_int("3") == 3
    assert port_number("65535") == 65535
    for bad in ("0", "-1", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        port_number("65536")


@pytest.mark.parametrize(("typed", "answer"), [("y\n", True), ("YES\n", True), ("n\n", False)])
def test_confirmed_takes_only_yes_for_yes(
    typed: str, answer: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
    assert confirmed("Remove it?", assume_yes=False) is answer
    assert "Remove it? [y/N]" in capsys.readouterr().err


def test_confirmed_without_a_terminal_answer_is_no_and_yes_flag_asks_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert confirmed("Remove it?", assume_yes=False) is False
    assert "nothing changed" in capsys.readouterr().err
    assert confirmed("Remove it?", assume_yes=True) is True
    assert capsys.readouterr().err == ""


def test_plural_and_region_label() -> None:
    assert plural(1, "interest") == "1 interest"
    assert plural(0, "interest") == "0 interests"
    assert plural(2, "entry", "entries") == "2 entries"
    assert region_label("ge-so") == "South Ossetia"
    assert region_label("no-such-region") == "no-such-region"
