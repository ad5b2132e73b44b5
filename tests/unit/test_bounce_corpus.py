"""``alerts bounces parse`` against real bounces from many MTAs (tests/data/bounces).

Issue 15's bar: the right recipient for at least 95% and the right
hard/soft/complaint kind for at least 95% of each outside collection. The
expected answers are the labels each collection's own project gives its
files (tests/data/bounces/README.md says how, and records the few answers
that are ambiguous: those are parsed but not counted).
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
    assert set(answers) == set(expected)  # every file parsed, scored or not
    scored = {name: want for name, want in expected.items() if want.get("scored", True)}
    right_recipient = {
        name
        for name, want in scored.items()
        if sorted(answers[name]["recipients"]) == sorted(want["recipients"])
    }
    right_kind = {name for name, want in scored.items() if answers[name]["kind"] == want["kind"]}
    misses = "\n".join(
        f"{name}: got {answers[name]['kind']} {answers[name]['recipients']}, "
        f"want {want['kind']} {want['recipients']}"
        for name, want in sorted(scored.items())
        if name not in right_recipient or name not in right_kind
    )
    print(
        f"{collection.name}: recipient {len(right_recipient)}/{len(scored)}, "
        f"kind {len(right_kind)}/{len(scored)}, {len(expected) - len(scored)} not scored"
    )
    assert len(right_recipient) / len(scored) >= REQUIRED_SHARE, misses
    assert len(right_kind) / len(scored) >= REQUIRED_SHARE, misses


def test_every_unscored_answer_says_why_and_the_corpus_names_its_sources() -> None:
    labelled = 0
    readme = (CORPUS / "README.md").read_text()
    for collection in collections():
        expected = json.loads((collection / "expected.json").read_text())
        labelled += sum(1 for want in expected.values() if want.get("scored", True))
        assert all(want.get("why") for want in expected.values() if not want.get("scored", True))
        assert collection.name in readme
        assert (collection / "LICENSE").is_file()
        assert all((collection / name).is_file() for name in expected)
    assert labelled >= 150


def test_each_outside_message_records_where_it_came_from() -> None:
    expected = json.loads((CORPUS / "sisimai" / "expected.json").read_text())
    for name, want in expected.items():
        source = want["source"]
        assert source["repo"].startswith("sisimai/"), name
        assert len(source["commit"]) == 40, name
        assert source["path"].endswith(".eml"), name
        assert want["kind"] in ("hard", "soft", "complaint", "auto-reply", "not-a-bounce"), name
