"""Storage per article: matches stored per reader (0008) against per distinct interest (0009).

    .venv/bin/python bench/match_storage.py [--readers 10000] [--articles 40]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

Makes a scratch PostgreSQL database at migration 0008 and seeds readers who
follow popular regions the way a regional desk's audience does: each reader
follows one to three of a handful of region interests (South Ossetia,
Abkhazia, Georgia, Armenia ...), some with a keyword. The articles are tagged
with those regions, and every (article, interest) the matching index finds is
stored as 0008 stored it: one row per reader's interest. The figures are taken,
then the database is upgraded to 0009 (the migration converts the rows) and
taken again: rows and bytes (``pg_total_relation_size``, indexes and TOAST
included) per article for ``matches``, plus what is paid once, not per
article: ``distinct_interests``, ``interest_links`` (one an interest) and the
growth of ``interests`` (its two new columns and index). It checks that
the readers reach as many (reader interest, article) matches after as there
were rows before.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Interests a regional desk's readers share: (query, regions); most are a region alone.
POPULAR = [
    (None, ["ge-so"]),
    (None, ["ge-ab"]),
    (None, ["ge"]),
    (None, ["am"]),
    (None, ["az"]),
    (None, ["ru"]),
    (None, ["ua"]),
    ("election", ["ge"]),
    ("referendum", ["ge-so"]),
    ("border", ["ge-ab"]),
    ("protest", ["am"]),
    ("gas", ["az"]),
]
# (tag, words in the text): each article is about one or two of these.
STORIES = [
    ("South Ossetia", "Tskhinvali officials discussed a referendum and the border crossing."),
    ("Abkhazia", "Sukhumi reported talks on the border and the election of a new council."),
    ("Georgia", "Tbilisi lawmakers debated the election law during a protest outside."),
    ("Armenia", "Yerevan saw a protest over gas prices and the border with Azerbaijan."),
    ("Azerbaijan", "Baku signed a gas contract and spoke about the election calendar."),
    ("Russia", "Moscow commented on the border talks and the gas transit fee."),
    ("Ukraine", "Kyiv officials discussed the gas transit and an election date."),
]
START = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def seed(engine: sa.Engine, readers: int, articles: int) -> int:
    """Readers, interests, articles and per-reader matches at 0008; returns the rows."""
    from alerts.matching.document import analyze
    from alerts.matching.index import Interest as IndexedInterest
    from alerts.matching.index import InterestIndex
    from alerts.matching.service import score
    from alerts.regions import default_gazetteer

    rng = random.Random(16)
    gazetteer = default_gazetteer()
    meta = sa.MetaData()
    meta.reflect(engine, only=["subscribers", "interests", "articles", "matches"])
    subscribers, interests, article_table, matches = (
        meta.tables[name] for name in ("subscribers", "interests", "articles", "matches")
    )
    with engine.begin() as connection:
        subscriber_ids = connection.scalars(
            sa.insert(subscribers).returning(subscribers.c.id, sort_by_parameter_order=True),
            [
                {
                    "email": f"reader{n:06d}@storage.example.org",
                    "status": "confirmed",
                    "frequency": "daily",
                    "timezone": "UTC",
                    "send_at": datetime(2026, 1, 1, 7).time(),
                    "weekly_day": 0,
                    "language": "en",
                    "paused": False,
                    "created_at": START,
                    "confirmed_at": START,
                    "last_digest_at": START,
                }
                for n in range(readers)
            ],
        ).all()
        chosen = [
            (subscriber_id, POPULAR[k])
            for subscriber_id in subscriber_ids
            for k in rng.sample(range(len(POPULAR)), rng.randint(1, 3))
        ]
        interest_ids = connection.scalars(
            sa.insert(interests).returning(interests.c.id, sort_by_parameter_order=True),
            [
                {
                    "subscriber_id": subscriber_id,
                    "query": query,
                    "regions": regions,
                    "created_at": START,
                    "updated_at": START,
                }
                for subscriber_id, (query, regions) in chosen
            ],
        ).all()
        index = InterestIndex(gazetteer)
        for interest_id, (_, (query, regions)) in zip(interest_ids, chosen, strict=True):
            index.add(IndexedInterest(str(interest_id), query, tuple(regions)))
        subscriber_of = {
            interest_id: subscriber_id
            for interest_id, (subscriber_id, _) in zip(interest_ids, chosen, strict=True)
        }
        rows = 0
        for n in range(articles):
            picked = rng.sample(STORIES, rng.randint(1, 2))
            tags = [tag for tag, _ in picked]
            title = f"{tags[0]}: report {n}"
            body = " ".join(text for _, text in picked)
            moment = START + timedelta(minutes=10 * n)
            article_id = connection.scalar(
                sa.insert(article_table)
                .values(
                    title=title,
                    lead=body,
                    body=body,
                    tags=tags,
                    language="en",
                    fingerprint=f"storage-{n}",
                    title_key=f"storage-{n}",
                    ingested_at=moment,
                    match_state="done",
                )
                .returning(article_table.c.id)
            )
            document = analyze(
                str(article_id),
                title=title,
                body=body,
                tags=tags,
                source="",
                language="en",
                gazetteer=gazetteer,
            )
            found = [
                {
                    "article_id": article_id,
                    "interest_id": int(match.interest_id),
                    "subscriber_id": subscriber_of[int(match.interest_id)],
                    "score": score(match.explanation),
                    "explanation": dataclasses.asdict(match.explanation),
                    "matched_at": moment,
                }
                for match in index.match(document)
            ]
            for start in range(0, len(found), 10_000):
                connection.execute(sa.insert(matches), found[start : start + 10_000])
            rows += len(found)
    return rows


def sizes(engine: sa.Engine, tables: list[str]) -> dict[str, tuple[int, int]]:
    """(rows, bytes with indexes and TOAST) of each table, after VACUUM ANALYZE."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("VACUUM ANALYZE")
        return {
            table: (
                connection.scalar(sa.text(f'SELECT count(*) FROM "{table}"')) or 0,
                connection.scalar(sa.text("SELECT pg_total_relation_size(:t)"), {"t": table}) or 0,
            )
            for table in tables
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--articles", type=int, default=40)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    from alembic import command

    from alerts.db import _alembic_config, make_engine

    name = f"alerts_bench_storage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = args.postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    engine = make_engine(f"{base}/{name}")
    try:
        config = _alembic_config(engine)
        command.upgrade(config, "0008_bounce_events")
        old_rows = seed(engine, args.readers, args.articles)
        before = sizes(engine, ["matches", "interests"])
        command.upgrade(config, "0009_distinct_matches")
        after = sizes(engine, ["matches", "distinct_interests", "interest_links", "interests"])
        with engine.connect() as connection:
            reached = connection.scalar(
                sa.text(
                    "SELECT count(*) FROM interest_links l JOIN matches m"
                    " ON m.distinct_id = l.distinct_id AND m.matched_at >= l.since"
                    " AND (l.until IS NULL OR m.matched_at < l.until)"
                )
            )
    finally:
        engine.dispose()
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert reached == old_rows, (reached, old_rows)
    per = args.articles
    interests_rows = before["interests"][0]
    print(
        f"{args.readers:,} readers, {interests_rows:,} interests over {len(POPULAR)} popular"
        f" meanings, {args.articles} articles; PostgreSQL"
    )
    rows_before, bytes_before = before["matches"]
    rows_after, bytes_after = after["matches"]
    distinct_rows, distinct_bytes = after["distinct_interests"]
    grown = after["interests"][1] - before["interests"][1]
    link_rows, link_bytes = after["interest_links"]
    print(
        f"  0008 per reader:   {rows_before / per:9,.1f} rows/article"
        f"  {bytes_before / per / 1024:9,.1f} KiB/article (matches)"
    )
    print(
        f"  0009 per distinct: {rows_after / per:9,.1f} rows/article"
        f"  {bytes_after / per / 1024:9,.1f} KiB/article (matches)"
    )
    print(
        f"  once, not per article: distinct_interests {distinct_rows} rows"
        f" {distinct_bytes / 1024:,.0f} KiB; interest_links {link_rows:,} rows"
        f" {link_bytes / 1024:,.0f} KiB; interests grew {grown / 1024:,.0f} KiB"
        " (distinct_id, distinct_since, index)"
    )
    print(
        f"  readers reach {reached:,} (interest, article) matches after, as many as the"
        f" {old_rows:,} rows before; {bytes_before / max(bytes_after, 1):,.0f}x less in matches"
    )


if __name__ == "__main__":
    main()
