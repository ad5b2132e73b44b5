"""``alerts bounces parse`` against real bounces from many MTAs (tests/data/bounces).

Issue 15's bar: the right recipient for at least 95% and the right
hard/soft kind for at least 95% of an outside collection. The expected
answers are the labels the collection's own test suite gives each file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.cli import main as cli_main
from alerts.config import get_settings
from tests.conftest import REPO_ROOT

CORPUS = REPO_ROOT / "tests" / "data" / "bounces"
REQUIRED_SHARE = 0.95


def collections() -> list[Path]:
    return sorted(path.parent for path in CORPUS.glob("*/expected.json"))


@pytest.mark.parametrize("collection", collections(), ids=lambda path: path.name)
def test_the_parser_names_recipient_and_kind_of_real_bounces(
    collection: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_BOUNCE_DOMAIN", "bounces.news.example.org")
    get_settings.cache_clear()
    expected = json.loads((collection / "expected.json").read_text())
    files = [str(collection / name) for name in sorted(expected)]
    assert cli_main(["bounces", "parse", "--json", *files]) == 0
    answers = {
        Path(item["file"]).name: item
        for item in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert set(answers) == set(expected)
    right_recipient = [
        name
        for name, want in expected.items()
        if sorted(answers[name]["recipients"]) == sorted(want["recipients"])
    ]
    right_kind = [name for name, want in expected.items() if answers[name]["kind"] == want["kind"]]
    wrong = {
        name: answers[name]
        for name in expected
        if name not in right_recipient or name not in right_kind
    }
    assert len(right_recipient) / len(expected) >= REQUIRED_SHARE, wrong
    assert len(right_kind) / len(expected) >= REQUIRED_SHARE, wrong


def test_the_corpus_is_large_and_says_where_it_came_from() -> None:
    labelled = sum(len(json.loads(p.read_text())) for p in CORPUS.glob("*/expected.json"))
    assert labelled >= 100
    readme = (CORPUS / "README.md").read_text()
    for collection in collections():
        assert collection.name in readme
        assert (collection / "LICENSE").is_file()
