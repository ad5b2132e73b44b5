"""``alerts match``: JSONL in, JSONL out, exit 2 on a bad interest."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alerts.cli.match import EXIT_BAD_INTEREST, EXIT_OK, register, run_match, run_match_command

ARTICLES = [
    {
        "id": "a1",
        "title": "South Ossetia to hold a referendum",
        "body": "Officials in Tskhinvali confirmed the vote.\n\nMore later.",
        "url": "https://example.test/a1",
        "published": "2024-03-31T10:00:00+00:00",
        "language": "en",
        "tags": ["Politics"],
        "source": "Caucasus Watch",
    },
    {
        "id": "a2",
        "title": "Storms in Atlanta, Georgia",
        "body": "Rain fell all night.",
        "url": "https://example.test/a2",
        "published": "2024-04-01T08:30:00Z",
        "language": "en",
        "tags": [],
        "source": "Wire",
    },
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    return path


def run(tmp_path: Path, interests: list[Any]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_match(
        write_jsonl(tmp_path / "interests.jsonl", interests),
        write_jsonl(tmp_path / "articles.jsonl", ARTICLES),
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_outputs_one_line_per_article(tmp_path: Path) -> None:
    code, out, err = run(
        tmp_path,
        [
            {"id": "vote", "query": "referendum"},
            {"id": "georgia", "query": None, "regions": ["Georgia"]},
            {"id": "so", "query": "referendum", "regions": ["south ossetia"]},
            {"id": "storm", "query": "title:storm*"},
        ],
    )
    assert code == EXIT_OK, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"article": "a1", "interests": ["georgia", "so", "vote"]},
        {"article": "a2", "interests": ["storm"]},
    ]


@pytest.mark.parametrize(
    ("interest", "fragment"),
    [
        ({"id": "bad-paren", "query": "(referendum"}, "unbalanced '('"),
        ({"id": "neg", "query": "-referendum"}, "not negated"),
        (
            {"id": "where", "query": "referendum", "regions": ["Atlantis"]},
            "unknown region 'Atlantis'",
        ),
        ({"id": "nothing"}, "needs a query or at least one region"),
        ({"id": "type", "query": 3}, "'query' must be a string"),
    ],
)
def test_bad_interest_exits_2_naming_id_and_line(
    tmp_path: Path, interest: dict[str, Any], fragment: str
) -> None:
    code, out, err = run(tmp_path, [{"id": "fine", "query": "x"}, interest])
    assert code == EXIT_BAD_INTEREST
    assert out == ""
    assert ":2:" in err
    assert repr(interest["id"]) in err
    assert fragment in err


def test_query_error_shows_a_caret(tmp_path: Path) -> None:
    _, _, err = run(tmp_path, [{"id": "q", "query": "a (b"}])
    assert "a (b\n  ^" in err


def test_register_adds_the_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["match", "--interests", "i.jsonl", "--articles", "a.jsonl"])
    assert args.interests == Path("i.jsonl")
    assert args.handler is run_match_command


def test_runs_as_a_process(tmp_path: Path) -> None:
    interests = write_jsonl(tmp_path / "i.jsonl", [{"id": "bad", "query": '"open'}])
    articles = write_jsonl(tmp_path / "a.jsonl", ARTICLES)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alerts.cli.match",
            "--interests",
            str(interests),
            "--articles",
            str(articles),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == EXIT_BAD_INTEREST
    assert "'bad'" in result.stderr
    assert "unterminated quote" in result.stderr
