"""Benchmark the database work around matching and digests, at soak scale.

    .venv/bin/python bench/storage.py [--subscribers 100000] [--articles 20] [--ticks 10]

Seeds a scratch PostgreSQL database the way bench/soak.py does (one
two-word interest per reader, 5% immediate, daily send times spread over the
next half hour in five zones), then measures two things, each against the way
it was done before, in the same run:

* storing one article's matches (one row per matched distinct interest):
  `store_matches` (COPY into a scratch table, one INSERT ... SELECT) against
  a multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING through SQLAlchemy;
* one clock tick of digest planning: `plan_due_digests` (one grouped query,
  then readers of due schedules only) against one reader query per schedule.
  The baseline only finds the due readers; the planner also promises them.

Each measured call runs in a transaction that is rolled back, so every
repetition starts from the same state. Needs PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from soak import REPO, common_words, load_corpus, scratch_database, seed
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session


def baseline_store(session: Session, rows: list[tuple[Any, ...]]) -> list[Any]:
    """How matches were stored before: one multi-row INSERT through SQLAlchemy."""
    from alerts.matching.service import MATCH_COLUMNS
    from alerts.models import Match

    statement = postgresql.insert(Match).on_conflict_do_nothing(
        index_elements=["article_id", "distinct_id"]
    )
    return session.execute(
        statement.returning(Match.article_id, Match.distinct_id),
        [dict(zip(MATCH_COLUMNS, row, strict=True)) for row in rows],
    ).all()


def baseline_due_readers(session: Session, now: datetime) -> int:
    """How the clock found due readers before: one query per schedule."""
    from alerts.models import Subscriber, SubscriberStatus
    from alerts.schedule import latest_slot

    active = (Subscriber.status == SubscriberStatus.CONFIRMED, Subscriber.paused.is_(False))
    schedules = session.execute(
        select(Subscriber.timezone, Subscriber.send_at, Subscriber.frequency, Subscriber.weekly_day)
        .where(*active)
        .distinct()
    ).all()
    due = 0
    for timezone, send_at, frequency, weekly_day in schedules:
        slot = latest_slot(now, frequency, timezone, send_at, weekly_day)
        due += len(
            session.execute(
                select(Subscriber.id).where(
                    *active,
                    Subscriber.timezone == timezone,
                    Subscriber.send_at == send_at,
                    Subscriber.frequency == frequency,
                    Subscriber.weekly_day == weekly_day,
                    Subscriber.last_digest_at.is_(None) | (Subscriber.last_digest_at < slot.at),
                )
            ).all()
        )
    return due


def timed(database: Any, work: Callable[[Session], int]) -> tuple[float, int]:
    """Seconds and result of ``work`` in a transaction that is then rolled back."""
    with database.engine.connect() as connection, Session(bind=connection) as session:
        started = time.perf_counter()
        result = work(session)
        elapsed = time.perf_counter() - started
        session.rollback()
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "data" / "articles" / "geovirus.xml"
    )
    args = parser.parse_args()

    with scratch_database("alerts_bench") as name:
        os.environ.update(
            {
                "ALERTS_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "ALERTS_BROKER_URL": "memory://",
                "ALERTS_SECRET_KEY": "bench-secret",
                "ALERTS_DATA_DIR": f"/tmp/{name}",
            }
        )
        Path(f"/tmp/{name}").mkdir()
        from alerts.config import get_settings
        from alerts.db import get_database

        run(args, get_database(get_settings()))


def run(args: argparse.Namespace, database: Any) -> None:
    from alerts.config import get_settings
    from alerts.db import utcnow
    from alerts.digest import plan_due_digests
    from alerts.matching.document import analyze
    from alerts.matching.service import IndexCache, distinct_ids, score, store_matches
    from alerts.models import Article
    from alerts.regions import default_gazetteer

    corpus = load_corpus(args.corpus)
    seed(database, args.subscribers, common_words(corpus), minutes=30)
    seeded_at = utcnow()
    with database.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    settings = get_settings()
    cache = IndexCache(default_gazetteer(), settings)
    with database.session_scope() as session:
        cache.refresh(session)
        articles = [
            Article(
                title=title,
                body=body,
                tags=tags,
                language="en",
                fingerprint=f"bench-{n}",
                title_key=f"bench-{n}",
            )
            for n, (title, body, tags) in enumerate(corpus[: args.articles])
        ]
        session.add_all(articles)
        session.flush()
        documents = [
            (
                a.id,
                analyze(
                    str(a.id),
                    title=a.title,
                    body=a.body,
                    tags=a.tags,
                    source="",
                    language="en",
                    gazetteer=cache.gazetteer,
                ),
            )
            for a in articles
        ]
    gc.freeze()  # as the workers do once their index is built
    print(f"{args.subscribers:,} subscribers, {args.articles} articles")

    figures: dict[str, list[float]] = {"copy": [], "insert": []}
    counts = []
    reached = []
    found = [(article_id, cache.index.match_entries(doc)) for article_id, doc in documents]
    with database.session_scope() as session:
        # The refresh above created them all: this only reads their ids.
        ids = distinct_ids(session, (e.match_key for _, entries in found for e in entries))
    for turn, (article_id, entries) in enumerate(found):
        now = utcnow()
        rows = [
            (
                article_id,
                ids[entry.match_key],
                score(entry.explanation),
                dataclasses.asdict(entry.explanation),
                now,
            )
            for entry in entries
        ]
        ways = [("copy", store_matches), ("insert", baseline_store)]
        for way, store in ways if turn % 2 else reversed(ways):
            elapsed, stored = timed(database, lambda s, store=store, rows=rows: len(store(s, rows)))
            assert stored == len(rows), (way, stored, len(rows))
            figures[way].append(elapsed)
        counts.append(len(rows))
        reached.append(sum(len(entry.interest_ids) for entry in entries))
    print(
        f"\nstoring matches: {statistics.mean(counts):,.0f} rows per article on average"
        f" (one per distinct interest; {statistics.mean(reached):,.0f} reader interests reached)"
    )
    for way, label in (("copy", "store_matches (COPY)"), ("insert", "baseline multi-row INSERT")):
        p50 = statistics.median(figures[way])
        rows_per_second = sum(counts) / sum(figures[way])
        print(f"  {label:28} p50 {p50 * 1000:7.1f} ms/article  {rows_per_second:9,.0f} rows/s")

    print("\nplanning digests, one clock tick:")
    for label, at in (
        ("nothing due", seeded_at),
        ("first minute due", seeded_at + timedelta(minutes=2)),
    ):
        planner, baseline = [], []
        due = found = 0
        for _ in range(args.ticks):
            elapsed, due = timed(database, lambda s, at=at: len(plan_due_digests(s, settings, at)))
            planner.append(elapsed)
            elapsed, found = timed(database, lambda s, at=at: baseline_due_readers(s, at))
            baseline.append(elapsed)
        assert due == found, (due, found)
        print(
            f"  {label:17} {due:6,} due:"
            f" plan_due_digests p50 {statistics.median(planner) * 1000:7.1f} ms,"
            " baseline (one query per schedule, finding only)"
            f" p50 {statistics.median(baseline) * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
