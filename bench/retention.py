"""Benchmark retention: database size over a simulated year, with and without pruning.

    .venv/bin/python bench/retention.py [--days 365] [--articles-per-day 40]
        [--matches-per-article 100] [--readers 1000] [--postgres URL]

Ages data instead of waiting a year: each simulated day stores that day's
articles, their matches (one per matched distinct interest), every reader's
daily digest row and a few rate-limit events, all dated that day, then runs
the daily prune exactly as the clock does (`alerts.retention.prune_all`,
default retention settings, default batch size).
The baseline is the same year with no pruning (what every install did before).
Runs on the embedded default (SQLite in a scratch data dir) unless --postgres
names a server database, in which case a scratch database is made and dropped.
Prints the database size at the end of each month for both runs, the prune's
time per day, and the growth over the last six months.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

START = datetime(2025, 12, 1, 3, 17, tzinfo=UTC)


def _configure(data_dir: Path, postgres: str | None, label: str) -> str | None:
    """Point the settings at a fresh database; returns a PostgreSQL database to drop."""
    from alerts import db
    from alerts.config import get_settings

    os.environ["ALERTS_DATA_DIR"] = str(data_dir / label)
    os.environ.pop("ALERTS_DATABASE_URL", None)
    created = None
    if postgres:
        import psycopg

        created = f"alerts_bench_retention_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(postgres, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{created}"')
        base = postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        os.environ["ALERTS_DATABASE_URL"] = f"{base}/{created}"
    for database in db._databases.values():
        database.dispose()
    db._databases.clear()
    get_settings.cache_clear()
    return created


def _seed_readers(readers: int) -> tuple[list[int], list[int]]:
    """Readers with one interest each; returns (reader ids, their distinct interest ids)."""
    from alerts.config import get_settings
    from alerts.db import get_database
    from alerts.matching.service import IndexCache
    from alerts.models import Interest, Subscriber, SubscriberStatus
    from alerts.regions import default_gazetteer

    with get_database().session_scope() as session:
        people = [
            Subscriber(email=f"r{n}@example.org", status=SubscriberStatus.CONFIRMED)
            for n in range(readers)
        ]
        session.add_all(people)
        session.flush()
        interests = [Interest(subscriber_id=p.id, query=f"word{p.id}") for p in people]
        session.add_all(interests)
        session.flush()
        # The match worker's refresh points each interest at its distinct interest.
        IndexCache(default_gazetteer(), get_settings()).refresh(session, START)
        session.expire_all()
        return [p.id for p in people], [i.distinct_id or 0 for i in interests]


def _one_day(day: int, args: argparse.Namespace, people: list[int], distinct: list[int]) -> None:
    from sqlalchemy import insert

    from alerts.db import get_database
    from alerts.models import Article, Delivery, DeliveryKind, DeliveryState, Match, RateEvent

    moment = START + timedelta(days=day)
    with get_database().session_scope() as session:
        article_ids = []
        for n in range(args.articles_per_day):
            key = f"{day}-{n}"
            article = Article(
                title=f"Story {key}",
                body="A paragraph of news text. " * 40,
                fingerprint=key,
                title_key=key,
                ingested_at=moment,
            )
            session.add(article)
            session.flush()
            article_ids.append(article.id)
        rows = [
            {
                "article_id": article_id,
                "distinct_id": distinct[(article_id * 7 + k) % len(distinct)],
                "score": 1.0,
                "explanation": {"words": ["word"]},
                "matched_at": moment,
            }
            for article_id in article_ids
            for k in range(args.matches_per_article)
        ]
        session.execute(insert(Match), rows)
        session.execute(
            insert(Delivery),
            [
                {
                    "dedup_key": f"digest:{person}:{day}",
                    "kind": DeliveryKind.DIGEST,
                    "state": DeliveryState.SENT,
                    "subscriber_id": person,
                    "recipient": f"r{person}@example.org",
                    "message_id": f"<{person}.{day}@bench>",
                    "payload": {"window": f"{day}"},
                    "created_at": moment,
                    "updated_at": moment,
                    "due_at": moment,
                    "sent_at": moment,
                }
                for person in people
            ],
        )
        session.execute(
            insert(RateEvent), [{"key": f"signup:{n}", "at": moment} for n in range(50)]
        )


def _size() -> int:
    from alerts.db import get_database
    from alerts.retention import database_bytes

    with get_database().session_scope() as session:
        return database_bytes(session) or 0


def run_year(args: argparse.Namespace, data_dir: Path, prune: bool) -> dict[str, object]:
    from alerts.config import get_settings
    from alerts.retention import prune_all

    label = "pruned" if prune else "baseline"
    created = _configure(data_dir, args.postgres, label)
    try:
        people, distinct = _seed_readers(args.readers)
        sizes: list[int] = []
        prune_seconds: list[float] = []
        for day in range(args.days):
            _one_day(day, args, people, distinct)
            if prune:
                started = time.perf_counter()
                prune_all(get_settings(), START + timedelta(days=day))
                prune_seconds.append(time.perf_counter() - started)
            if day % 30 == 29 or day == args.days - 1:
                sizes.append(_size())
        return {"label": label, "sizes": sizes, "prune_seconds": prune_seconds}
    finally:
        if created:
            from alerts import db

            for database in db._databases.values():
                database.dispose()
            db._databases.clear()
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--articles-per-day", type=int, default=40)
    parser.add_argument("--matches-per-article", type=int, default=100)
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--postgres", help="e.g. postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.postgres else "SQLite (embedded default)"
    print(
        f"{args.days} days on {backend}: {args.articles_per_day} articles/day, "
        f"{args.matches_per_article} matches each, {args.readers} daily digests/day; "
        "default retention settings (articles 180 d, matches 90 d, deliveries 90 d)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        runs = [run_year(args, Path(scratch), prune) for prune in (False, True)]
    print(f"{'month':>5} {'baseline MB':>12} {'pruned MB':>10}")
    for month, (plain, pruned) in enumerate(
        zip(runs[0]["sizes"], runs[1]["sizes"], strict=True),
        start=1,  # type: ignore[call-overload]
    ):
        print(f"{month:>5} {plain / 1e6:>12.1f} {pruned / 1e6:>10.1f}")
    for run in runs:
        sizes = run["sizes"]
        assert isinstance(sizes, list)
        half = len(sizes) // 2
        growth = (sizes[-1] - sizes[half]) / sizes[half] if sizes[half] else 0.0
        print(f"{run['label']}: growth over the second half {growth:+.0%}")
    seconds = runs[1]["prune_seconds"]
    assert isinstance(seconds, list)
    print(
        f"daily prune: median {statistics.median(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
