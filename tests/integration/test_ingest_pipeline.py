"""The ingest pipeline end to end, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.ingest.formats import SourceError, parse_document
from alerts.ingest.limits import IngestLimits
from alerts.ingest.service import claim_due_sources, poll_source
from alerts.matching.service import IndexCache, match_articles
from alerts.models import Article, Source
from alerts.regions import default_gazetteer
from tests.conftest import REPO_ROOT, SHARED_DATA, FeedServer, RecordedJobs

SAMPLE = [REPO_ROOT / "sample" / name for name in ("articles.jsonl", "feed.xml", "desk-export.txt")]
SHARED_FEEDS = sorted((SHARED_DATA / "feeds").glob("*/*"))

STORY_TEXT = (
    "The mountain pass between Kazbegi and Vladikavkaz reopened on Friday after a week of "
    "snowdrifts, and the first lorries crossed before noon."
)


def rss(items: str, title: str = "Test feed") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
        f"<link>https://news.test/</link>{items}</channel></rss>"
    ).encode()


def rss_item(title: str, link: str, description: str) -> str:
    return (
        f"<item><title>{title}</title><link>{link}</link>"
        f"<description>{description}</description></item>"
    )


def ingest_json(capsys: pytest.CaptureFixture[str], *sources: str) -> tuple[int, dict[str, object]]:
    code = main(["ingest", "--json", *sources])
    return code, json.loads(capsys.readouterr().out)


def article_count(database: Database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count(Article.id))) or 0


def queued_for_matching(recorded_jobs: RecordedJobs) -> list[int]:
    return [i for job in recorded_jobs.named("match_articles") for i in job["article_ids"]]


def test_sample_ingests_once_and_queues_matching_until_matched(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = ingest_json(capsys, *map(str, SAMPLE))
    assert code == 0
    assert first == {"new": 7, "duplicate": 0, "rejected": 0, "errors": []}
    queued = queued_for_matching(recorded_jobs)
    assert len(queued) == 7

    # Not matched yet (their tasks may be lost): a re-ingest queues them again.
    code, second = ingest_json(capsys, *map(str, SAMPLE))
    assert code == 0
    assert second == {"new": 0, "duplicate": 7, "rejected": 0, "errors": []}
    assert sorted(queued_for_matching(recorded_jobs)[7:]) == sorted(queued)

    with database.session_scope() as session:
        match_articles(session, queued, IndexCache(default_gazetteer(), get_settings()), utcnow())
    recorded_jobs.clear()
    code, third = ingest_json(capsys, *map(str, SAMPLE))
    assert code == 0
    assert third == {"new": 0, "duplicate": 7, "rejected": 0, "errors": []}
    assert recorded_jobs.named("match_articles") == []  # matched: nothing queued again
    assert article_count(database) == 7


def test_redate_moves_the_sample_to_now_and_keeps_its_spacing(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    as_written = {
        article.url: article.published
        for article in parse_document(SAMPLE[0].read_bytes(), location=str(SAMPLE[0])).articles
    }
    before = utcnow()
    assert main(["ingest", "--redate", str(SAMPLE[0])]) == 0
    with database.session_scope() as session:
        stored = {a.url: a.published_at for a in session.scalars(select(Article))}
    assert stored.keys() == as_written.keys()
    newest = max(stored.values())
    assert before <= newest <= utcnow()
    shifts = {stored[url] - published for url, published in as_written.items() if published}
    assert len(shifts) == 1  # every article moved by the same amount
    assert shifts.pop() > timedelta(days=1)  # the sample is dated in the past


def test_text_export_keeps_tags_and_drops_boilerplate(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(SAMPLE[2])]) == 0
    with database.session_scope() as session:
        article = session.scalars(select(Article)).one()
    assert article.tags == ["News", "North Ossetia", "Russia"]
    assert article.lead.startswith("Volunteers in Vladikavkaz")
    assert "cookies" not in article.body
    assert "hiring" not in article.body
    assert article.language == "en"


def test_same_story_through_two_feeds_is_one_article(
    database: Database,
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    first = tmp_path / "first.xml"
    first.write_bytes(rss(rss_item("Pass reopens", "https://one.test/pass", STORY_TEXT), "One"))
    second = tmp_path / "second.json"
    second.write_text(
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "title": "Two",
                "items": [
                    {
                        "id": "two-17",
                        "url": "https://two.test/articles/17",
                        "title": "  PASS reopens ",
                        "content_html": f"<p>{STORY_TEXT.upper()}</p>",
                    }
                ],
            }
        )
    )
    code, report = ingest_json(capsys, str(first), str(second))
    assert code == 0
    assert (report["new"], report["duplicate"]) == (1, 1)
    assert article_count(database) == 1


def test_near_duplicate_is_stored_and_linked(
    database: Database,
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(
        rss(
            rss_item("Pass reopens", "https://one.test/pass", STORY_TEXT)
            + rss_item(
                "Pass reopens", "https://two.test/pass", "Lorries crossed the Kazbegi pass again."
            )
        )
    )
    code, report = ingest_json(capsys, str(feed))
    assert (code, report["new"]) == (0, 2)
    with database.session_scope() as session:
        head, copy = session.scalars(select(Article).order_by(Article.id)).all()
    assert head.duplicate_of_id is None
    assert copy.duplicate_of_id == head.id


def test_unreadable_source_fails_with_one_line_and_keeps_the_rest(
    database: Database,
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 40)
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    code = main(
        ["ingest", "--json", str(garbage), str(empty), str(SAMPLE[1]), str(tmp_path / "absent.xml")]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["new"] == 2
    reasons = captured.err.strip().splitlines()
    assert len(reasons) == 3
    assert all(line.startswith("alerts ingest: ") for line in reasons)
    assert "absent.xml" in reasons[2]


def test_oversized_article_is_rejected_with_a_reason(
    database: Database,
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALERTS_INGEST_MAX_BODY_CHARS", "500")
    from alerts.config import get_settings

    get_settings.cache_clear()
    feed = tmp_path / "feed.xml"
    feed.write_bytes(
        rss(
            rss_item("Short", "https://one.test/a", "A short brief.")
            + rss_item("Long", "https://one.test/b", "word " * 400)
        )
    )
    code, report = ingest_json(capsys, str(feed))
    assert code == 0
    assert (report["new"], report["rejected"]) == (1, 1)
    [error] = report["errors"]
    assert "500" in error["reason"]
    assert error["source"] == str(feed)


def test_ingest_from_url_and_stdin(
    database: Database,
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = feed_server.serve("/feed.xml", SAMPLE[1].read_bytes())
    code, report = ingest_json(capsys, url)
    assert (code, report["new"]) == (0, 2)

    code = main(["ingest", feed_server.url("/gone.xml")])
    assert code == 1
    assert "404" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", _Stdin(SAMPLE[0].read_bytes()))
    code, report = ingest_json(capsys, "-")
    assert (code, report["new"]) == (0, 4)


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)


def test_poll_uses_conditional_get_and_records_failures(
    database: Database, recorded_jobs: RecordedJobs, feed_server: FeedServer
) -> None:
    url = feed_server.serve("/feed.xml", SAMPLE[1].read_bytes())
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    limits = IngestLimits(fetch_timeout=5)
    with database.session_scope() as session:
        source = Source(name="Briefs", url=url, poll_minutes=10, default_tags=["Briefs"])
        broken = Source(name="Broken", url=feed_server.url("/broken.xml"), poll_minutes=10)
        session.add_all([source, broken])
        session.flush()
        source_id, broken_id = source.id, broken.id

    with database.session_scope() as session:
        assert poll_source(session, source_id, now, limits).new == 2
    with database.session_scope() as session:
        assert poll_source(session, source_id, now, limits).new == 0
        poll_source(session, broken_id, now, limits)
    assert feed_server.requests[1] == ("/feed.xml", feed_server.requests[1][1])
    assert feed_server.requests[1][1] is not None  # the second poll sent If-None-Match

    with database.session_scope() as session:
        source = session.get_one(Source, source_id)
        broken = session.get_one(Source, broken_id)
        assert source.last_status == "not_modified"
        assert source.etag
        assert broken.last_status == "error"
        assert "404" in (broken.last_error or "")
        tags = session.scalars(select(Article.tags)).all()
    assert all("Briefs" in article_tags for article_tags in tags)


def test_due_sources_are_claimed_once_per_interval(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with database.session_scope() as session:
        session.add_all(
            [
                Source(name="due", url="https://a.test/feed", poll_minutes=10),
                Source(name="paused", url="https://b.test/feed", poll_minutes=10, active=False),
            ]
        )
    with database.session_scope() as session:
        first = claim_due_sources(session, now)
    with database.session_scope() as session:
        again = claim_due_sources(session, now + timedelta(minutes=5))
    with database.session_scope() as session:
        later = claim_due_sources(session, now + timedelta(minutes=10))
    assert len(first) == 1
    assert again == []
    assert later == first
    assert [job["source_id"] for job in recorded_jobs.named("poll_source")] == first * 2


@pytest.mark.skipif(not SHARED_FEEDS, reason="../shared/data/feeds is not beside this checkout")
def test_every_shared_feed_is_accounted_for_and_reingest_stores_nothing(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = 0
    readable = []
    for path in SHARED_FEEDS:
        try:
            parsed = parse_document(path.read_bytes(), location=str(path))
        except SourceError:
            continue
        entries += len(parsed.articles) + len(parsed.errors)
        readable.append(str(path))
    assert entries > 100

    code, first = ingest_json(capsys, *readable)
    assert code == 0
    assert first["new"] + first["duplicate"] + first["rejected"] == entries
    assert first["new"] > 100
    assert all(error["reason"] for error in first["errors"])

    code, second = ingest_json(capsys, *readable)
    assert second["new"] == 0
    assert second["duplicate"] + second["rejected"] == entries
    assert article_count(database) == first["new"]
