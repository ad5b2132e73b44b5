"""The matching ledger, on SQLite and on PostgreSQL: every stored article is
pending until the transaction that stores its matches, and the clock queues
again whatever stays pending, so a lost or refused match task loses nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select

from alerts import jobs
from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, _alembic_config, utcnow
from alerts.ingest.service import sweep_unmatched
from alerts.matching.service import IndexCache, match_articles, reached_matches
from alerts.models import Article, MatchState
from alerts.regions import default_gazetteer
from alerts.subscribers import NewSubscriber, add_subscriber
from alerts.tick import run_tick
from tests.conftest import RecordedJobs, free_port
from workers.celery_app import create_app
from workers.dispatch import sender_for

MIGRATION = "0007_match_ledger"


def write_feed(path: Path, *titles: str) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"story-{n}",
                    "title": title,
                    "body": f"{title}. The council met on Monday.",
                    "url": f"https://desk.test/{n}",
                    "language": "en",
                    "source": "Desk",
                }
            )
            + "\n"
            for n, title in enumerate(titles)
        )
    )
    return path


def states(database: Database) -> dict[int, MatchState]:
    with database.session_scope() as session:
        rows = session.execute(select(Article.id, Article.match_state))
        return {row.id: row.match_state for row in rows}


def matched(database: Database) -> list[tuple[int, int]]:
    with database.session_scope() as session:
        rows = session.execute(reached_matches())
        return sorted((row.article_id, row.interest_id) for row in rows)


def subscribe(database: Database, email: str, query: str) -> None:
    with database.session_scope() as session:
        add_subscriber(
            session,
            NewSubscriber(email=email, query=query, frequency="immediate", confirmed=True),
            get_settings(),
            utcnow(),
        )


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Celery sender, pointed at a Redis port nothing listens on."""
    monkeypatch.setenv("ALERTS_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    app = create_app(get_settings())
    jobs.set_job_sender(sender_for(app))


def test_ingest_with_the_broker_down_succeeds_warns_and_is_swept_later(
    database: Database,
    broker_down: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", "Tram line approved", "Bus fares rise")
    assert main(["ingest", str(feed)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{feed}: 2 new, 0 duplicate, 0 rejected"
    assert "alerts ingest: warning:" in err
    assert "2 article(s) stored but not queued for matching" in err
    assert "Traceback" not in err
    assert "InvalidRequestError" not in err
    assert set(states(database).values()) == {MatchState.PENDING}

    # Still down: the re-ingest says they are duplicates, not yet matched, and
    # tries to queue them again; --json keeps its shape.
    assert main(["ingest", "--json", str(feed)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"new": 0, "duplicate": 2, "rejected": 0, "errors": []}
    assert "2 article(s) stored but not queued" in err

    # The broker is back: the clock's sweeper queues both once their bound passed.
    recorded = RecordedJobs()
    jobs.set_job_sender(lambda job, arguments: recorded.append((job, arguments)))
    settings = get_settings()
    bound = timedelta(seconds=settings.match_requeue_after_seconds)
    with database.session_scope() as session:
        assert run_tick(session, settings, utcnow()).rematched == []  # not overdue yet
    later = utcnow() + bound + timedelta(seconds=1)
    with database.session_scope() as session:
        report = run_tick(session, settings, later)
    article_ids = sorted(states(database))
    assert report.rematched == article_ids
    assert recorded.named("match_articles") == [{"article_ids": article_ids}]
    with database.session_scope() as session:  # just queued: left alone for a while
        assert run_tick(session, settings, later + timedelta(seconds=1)).rematched == []


def test_the_task_claims_each_article_once_and_done_commits_with_the_matches(
    database: Database, recorded_jobs: RecordedJobs, tmp_path: Path
) -> None:
    subscribe(database, "tram@example.org", "tram")
    feed = write_feed(tmp_path / "feed.jsonl", "Tram line approved", "Bus fares rise")
    assert main(["ingest", str(feed)]) == 0
    [job] = recorded_jobs.named("match_articles")
    cache = IndexCache(default_gazetteer(), get_settings())

    # A task that fails after matching rolls back its claim with its matches.
    found: list[int] = []

    def task_that_fails() -> None:
        with database.session_scope() as session:
            found.append(len(match_articles(session, job["article_ids"], cache, utcnow())))
            raise RuntimeError("the worker failed before committing")

    with pytest.raises(RuntimeError):
        task_that_fails()
    assert found == [1]
    assert set(states(database).values()) == {MatchState.PENDING}
    assert matched(database) == []

    with database.session_scope() as session:
        assert len(match_articles(session, job["article_ids"], cache, utcnow())) == 1
    assert set(states(database).values()) == {MatchState.DONE}
    stored = matched(database)
    assert len(stored) == 1

    # A redelivered or re-queued copy finds the articles done and does nothing,
    # even for an interest added since.
    subscribe(database, "fares@example.org", "fares")
    with database.session_scope() as session:
        assert match_articles(session, job["article_ids"], cache, utcnow()) == []
    assert matched(database) == stored


def test_the_sweeper_leaves_fresh_and_matched_articles_alone(
    database: Database, recorded_jobs: RecordedJobs, tmp_path: Path
) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", "Tram line approved", "Bus fares rise")
    assert main(["ingest", str(feed)]) == 0
    first, second = sorted(states(database))
    with database.session_scope() as session:
        match_articles(session, [first], IndexCache(default_gazetteer(), get_settings()), utcnow())
    bound = timedelta(seconds=30)
    now = utcnow()
    with database.session_scope() as session:
        assert sweep_unmatched(session, now, requeue_after=bound) == []
    with database.session_scope() as session:
        assert sweep_unmatched(session, now + bound, requeue_after=bound) == [second]
    with database.session_scope() as session:
        assert sweep_unmatched(session, now + bound * 1.5, requeue_after=bound) == []
    with database.session_scope() as session:
        assert sweep_unmatched(session, now + bound * 2, requeue_after=bound) == [second]
    assert [job["article_ids"] for job in recorded_jobs.named("match_articles")][-2:] == [
        [second],
        [second],
    ]


# The migration: existing articles with a match, or older than an hour, are
# done; recent ones without any match are pending, for the sweeper to match.


def _old_rows(connection: sa.Connection, now: datetime) -> dict[str, int]:
    """Articles as the code before the ledger left them (only columns it had)."""
    subscribers = sa.table(
        "subscribers",
        *(sa.column(c) for c in ("id", "email", "status", "frequency", "timezone")),
        sa.column("send_at", sa.Time()),
        *(sa.column(c) for c in ("weekly_day", "language")),
        sa.column("paused", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    interests = sa.table(
        "interests",
        *(sa.column(c) for c in ("id", "subscriber_id", "query")),
        sa.column("regions", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    articles = sa.table(
        "articles",
        *(sa.column(c) for c in ("id", "fingerprint", "title_key", "title", "lead", "body")),
        sa.column("tags", sa.JSON()),
        sa.column("ingested_at", sa.DateTime(timezone=True)),
    )
    matches = sa.table(
        "matches",
        *(sa.column(c) for c in ("article_id", "interest_id", "subscriber_id", "score")),
        sa.column("explanation", sa.JSON()),
        sa.column("matched_at", sa.DateTime(timezone=True)),
    )
    # SQLite keeps naive UTC (alerts.models.UTCDateTime); PostgreSQL keeps aware.
    aware = connection.dialect.name == "postgresql"

    def at(moment: datetime) -> datetime:
        return moment if aware else moment.replace(tzinfo=None)

    connection.execute(
        subscribers.insert().values(
            id=1,
            email="old@example.org",
            status="confirmed",
            frequency="immediate",
            timezone="UTC",
            send_at=datetime(2026, 1, 1, 7).time(),
            weekly_day=0,
            language="en",
            paused=False,
            created_at=at(now),
        )
    )
    connection.execute(
        interests.insert().values(
            id=1, subscriber_id=1, query="tram", regions=[], created_at=at(now), updated_at=at(now)
        )
    )
    ages = {"recent matched": 0.1, "recent unmatched": 0.5, "old unmatched": 3.0}
    ids: dict[str, int] = {}
    for n, (label, hours) in enumerate(ages.items(), start=1):
        connection.execute(
            articles.insert().values(
                id=n,
                fingerprint=f"old-{n}",
                title_key=f"old-{n}",
                title=label,
                lead="",
                body="",
                tags=[],
                ingested_at=at(now - timedelta(hours=hours)),
            )
        )
        ids[label] = n
    connection.execute(
        matches.insert().values(
            article_id=ids["recent matched"],
            interest_id=1,
            subscriber_id=1,
            score=1.0,
            explanation={},
            matched_at=at(now),
        )
    )
    return ids


def test_migration_leaves_only_recent_unmatched_articles_pending(
    empty_engine: Engine, recorded_jobs: RecordedJobs
) -> None:
    config = _alembic_config(empty_engine)
    before = ScriptDirectory.from_config(config).get_revision(MIGRATION).down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)
    with empty_engine.begin() as connection:
        ids = _old_rows(connection, datetime.now(UTC))
    command.upgrade(config, "head")
    with empty_engine.connect() as connection:
        rows = {
            row.id: row.match_state
            for row in connection.execute(sa.text("SELECT id, match_state FROM articles"))
        }
        queued = connection.scalar(
            sa.text("SELECT count(*) FROM articles WHERE match_queued_at IS NOT NULL")
        )
    assert rows == {
        ids["recent matched"]: "done",
        ids["recent unmatched"]: "pending",
        ids["old unmatched"]: "done",
    }
    assert queued == 0  # never queued: the first sweep queues them
    database = Database(str(empty_engine.url.render_as_string(hide_password=False)))
    try:
        with database.session_scope() as session:
            assert sweep_unmatched(session, utcnow(), requeue_after=timedelta(seconds=30)) == [
                ids["recent unmatched"]
            ]
            assert session.scalar(select(func.count(Article.id))) == 3
    finally:
        database.dispose()
    assert recorded_jobs.named("match_articles") == [{"article_ids": [ids["recent unmatched"]]}]
