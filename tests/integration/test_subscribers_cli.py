"""The subscriber, digest and schedule commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.links import subscriber_links
from alerts.models import Interest, Subscriber, SubscriberStatus
from alerts.web.app import create_app
from tests.conftest import RecordedJobs


def listed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    assert main(["subscribers", "list", "--json"]) == 0
    rows: list[dict[str, str]] = json.loads(capsys.readouterr().out)
    return rows


def test_add_validates_and_stores_the_interest(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "subscribers",
            "add",
            "Reader@Example.org",
            "--query",
            "referendum OR annex*",
            "--region",
            "Tskhinvali Region",
            "--frequency",
            "weekly",
            "--timezone",
            "Asia/Tbilisi",
            "--send-at",
            "06:30",
            "--confirmed",
        ]
    )
    assert code == 0
    capsys.readouterr()
    assert listed(capsys) == [
        {
            "id": 1,
            "email": "reader@example.org",
            "status": "confirmed",
            "frequency": "weekly",
            "timezone": "Asia/Tbilisi",
            "send_at": "06:30",
        }
    ]
    with database.session_scope() as session:
        interest = session.scalars(select(Interest)).one()
    assert interest.query == "referendum OR annex*"
    assert interest.regions == ["ge-so"]


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["not-an-address"], "local-part@domain"),
        (["a@example.org", "--query", "(referendum"], "query"),
        (["a@example.org", "--query=-referendum"], "query"),
        (["a@example.org", "--region", "Atlantis"], "unknown region"),
        (["a@example.org", "--timezone", "Mars/Olympus"], "time zone"),
        (["a@example.org", "--send-at", "25:99"], "HH:MM"),
    ],
)
def test_add_refuses_bad_input_with_a_reason(
    database: Database, capsys: pytest.CaptureFixture[str], arguments: list[str], complaint: str
) -> None:
    assert main(["subscribers", "add", *arguments]) == 2
    assert complaint in capsys.readouterr().err
    assert listed(capsys) == []


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(
    database: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(
        "email,query,regions,frequency,timezone,confirmed\n"
        "one@example.org,referendum,South Ossetia;Abkhazia,daily,Europe/Berlin,yes\n"
        "broken-address,flood,,daily,UTC,yes\n"
        "two@example.org,,Sukhumi,immediate,UTC,no\n"
        "three@example.org,(unbalanced,,daily,UTC,yes\n"
        "one@example.org,flood,,daily,UTC,yes\n"
    )
    assert main(["subscribers", "import", str(csv_file)]) == 1
    captured = capsys.readouterr()
    assert "2 added, 3 rejected" in captured.out
    assert f"{csv_file}:3:" in captured.err
    assert f"{csv_file}:5:" in captured.err
    assert f"{csv_file}:6:" in captured.err
    rows = listed(capsys)
    assert [(r["email"], r["status"]) for r in rows] == [
        ("one@example.org", "confirmed"),
        ("two@example.org", "pending"),
    ]


def test_digests_send_now_and_schedule_list(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["subscribers", "add", "daily@example.org", "--query", "flood", "--confirmed"])
    main(
        [
            "subscribers",
            "add",
            "alerts@example.org",
            "--query",
            "flood",
            "--frequency",
            "immediate",
            "--confirmed",
        ]
    )
    export = Path(__file__).parents[2] / "sample" / "desk-export.txt"
    assert main(["ingest", "--json", str(export)]) == 0
    capsys.readouterr()
    # The digest window starts when the reader joined; nothing matched yet (no worker ran).
    assert main(["digests", "send", "--now"]) == 0
    assert "1 digests planned: 0 sent, 1 empty" in capsys.readouterr().out
    assert main(["schedule", "list"]) == 0
    schedule = capsys.readouterr().out
    assert "daily     07:00 UTC" in schedule
    assert "immediate 07:00 UTC" in schedule
    assert not list(get_settings().resolved_outbox_dir.glob("*.eml"))


def test_one_click_unsubscribe_posts_and_never_gets(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["subscribers", "add", "leaving@example.org", "--query", "flood", "--confirmed"])
    with database.session_scope() as session:
        version = session.scalars(select(Subscriber.token_version)).one()
    links = subscriber_links(get_settings(), 1, version=version, issued_at=utcnow())
    path = links["unsubscribe"].split("8000", 1)[1]
    client = TestClient(create_app())

    page = client.get(path)
    assert page.status_code == 200
    assert 'method="post"' in page.text

    def status() -> SubscriberStatus:
        with database.session_scope() as session:
            return session.scalars(select(Subscriber.status)).one()

    assert status() is SubscriberStatus.CONFIRMED  # a GET (a link scanner) changes nothing
    response = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert status() is SubscriberStatus.UNSUBSCRIBED

    forged = client.post(path[:-3] + "abc")
    assert forged.status_code == 400


def test_interest_preview_lists_stored_matches_and_refuses_bad_queries(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = Path(__file__).parents[2] / "sample"
    assert main(["ingest", str(sample / "articles.jsonl"), str(sample / "feed.xml")]) == 0
    capsys.readouterr()

    assert main(["interests", "preview", "referendum", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [hit["title"] for hit in hits] == ["Baku and Yerevan exchange border maps"]
    assert hits[0]["why"]["terms"][0]["term"] == "referendum"

    assert main(["interests", "preview", "--region", "South Ossetia", "--json"]) == 0
    titles = [json.loads(line)["title"] for line in capsys.readouterr().out.splitlines()]
    assert titles == ["Wahlbeobachter melden Unregelmäßigkeiten in Südossetien"]

    assert main(["interests", "preview", "crossing", "--region", "Abkhazia"]) == 0
    assert "Sukhumi hosts talks" in capsys.readouterr().out

    assert main(["interests", "preview", "(tram"]) == 2
    error = capsys.readouterr().err
    assert "position" in error
    assert "^" in error
    assert main(["interests", "preview", "tram", "--region", "Atlantis"]) == 2
    assert "Atlantis" in capsys.readouterr().err
