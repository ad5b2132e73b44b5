"""Migration 0009 on SQLite and PostgreSQL: per-reader match rows from 0008
become one row per (article, distinct interest), and every reader still
reaches exactly the matches they had; downgrading fans them out again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, select

from alerts.config import get_settings
from alerts.db import Database, _alembic_config
from alerts.matching.service import IndexCache, reached_matches
from alerts.models import Interest
from alerts.regions import default_gazetteer

pytestmark = pytest.mark.integration

BEFORE = "0008_bounce_events"
MIGRATION = "0009_distinct_matches"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
# (interest id, subscriber id, query, regions): 1 and 2 mean the same once
# normalised (case, spacing), 3 means something else, 4 does not parse any more
# (a rule tightened since it was stored), 5 is a region interest two readers share.
INTERESTS = [
    (1, 1, "flood", []),
    (2, 2, "  FLOOD ", []),
    (3, 2, "avalanche", []),
    (4, 3, "((unbalanced", []),
    (5, 3, None, ["ge-so"]),
    (6, 4, None, ["ge-so"]),
    (7, 4, "flood", []),
]
# Interest 7 was edited (to "flood") after the worker had matched it as "storm".
EDITED_AT = {7: NOW - timedelta(days=1)}
# (article id, interest id, explanation): what the 0008 worker stored per reader.
OLD_MATCHES = [
    (1, 1, {"terms": [{"term": "flood", "zones": ["title"]}], "regions": []}),
    (1, 2, {"terms": [{"term": "flood", "zones": ["title"]}], "regions": []}),
    (2, 1, {"terms": [{"term": "flood", "zones": ["body"]}], "regions": []}),
    (2, 2, {"terms": [{"term": "flood", "zones": ["body"]}], "regions": []}),
    (2, 3, {"terms": [{"term": "avalanche", "zones": ["title"]}], "regions": []}),
    (3, 4, {"terms": [{"term": "unbalanced", "zones": ["body"]}], "regions": []}),
    (3, 5, {"terms": [], "regions": [{"region_id": "ge-so", "zones": ["tag"]}]}),
    (3, 6, {"terms": [], "regions": [{"region_id": "ge-so", "zones": ["tag"]}]}),
    (1, 7, {"terms": [{"term": "storm", "zones": ["title"]}], "regions": []}),
]


def _table(name: str, *columns: str, **typed: Any) -> sa.TableClause:
    return sa.table(
        name, *(sa.column(c) for c in columns), *(sa.column(c, t) for c, t in typed.items())
    )


def _seed_0008(connection: sa.Connection) -> None:
    """Readers, interests, articles and per-reader matches, as 0008 stored them."""
    aware = connection.dialect.name == "postgresql"  # SQLite keeps naive UTC

    def at(moment: datetime) -> datetime:
        return moment if aware else moment.replace(tzinfo=None)

    when = sa.DateTime(timezone=True)
    subscribers = _table(
        "subscribers",
        "id",
        "email",
        "status",
        "frequency",
        "timezone",
        "weekly_day",
        "language",
        send_at=sa.Time(),
        paused=sa.Boolean(),
        created_at=when,
    )
    interests = _table(
        "interests",
        "id",
        "subscriber_id",
        "query",
        regions=sa.JSON(),
        created_at=when,
        updated_at=when,
    )
    articles = _table(
        "articles",
        "id",
        "fingerprint",
        "title_key",
        "title",
        "lead",
        "body",
        "match_state",
        tags=sa.JSON(),
        ingested_at=when,
    )
    matches = _table(
        "matches",
        "article_id",
        "interest_id",
        "subscriber_id",
        "score",
        explanation=sa.JSON(),
        matched_at=when,
    )
    connection.execute(
        subscribers.insert(),
        [
            {
                "id": n,
                "email": f"reader{n}@example.org",
                "status": "confirmed",
                "frequency": "daily",
                "timezone": "UTC",
                "send_at": datetime(2026, 1, 1, 7).time(),
                "weekly_day": 0,
                "language": "en",
                "paused": False,
                "created_at": at(NOW - timedelta(days=10)),
            }
            for n in range(1, 5)
        ],
    )
    created = at(NOW - timedelta(days=5))
    connection.execute(
        interests.insert(),
        [
            {
                "id": i,
                "subscriber_id": s,
                "query": q,
                "regions": r,
                "created_at": created,
                "updated_at": at(EDITED_AT[i]) if i in EDITED_AT else created,
            }
            for i, s, q, r in INTERESTS
        ],
    )
    connection.execute(
        articles.insert(),
        [
            {
                "id": n,
                "fingerprint": f"old-{n}",
                "title_key": f"old-{n}",
                "title": f"Story {n}",
                "lead": "",
                "body": "",
                "match_state": "done",
                "tags": [],
                "ingested_at": at(NOW - timedelta(days=4 - n)),
            }
            for n in range(1, 4)
        ],
    )
    subscriber_of = {i: s for i, s, _, _ in INTERESTS}
    connection.execute(
        matches.insert(),
        [
            {
                "article_id": a,
                "interest_id": i,
                "subscriber_id": subscriber_of[i],
                "score": 1.0 + a,
                "explanation": explanation,
                "matched_at": at(NOW - timedelta(days=4 - a, hours=-1)),
            }
            for a, i, explanation in OLD_MATCHES
        ],
    )


def _canonical(explanation: Any) -> str:
    """An explanation as comparable text (JSONB keeps its keys in its own order;
    SQLite hands JSON back as text through a plain text() query)."""
    decoded = json.loads(explanation) if isinstance(explanation, str) else explanation
    return json.dumps(decoded, sort_keys=True)


def _expected() -> set[tuple[int, int, int, float, str]]:
    """(subscriber, interest, article, score, explanation as text) per old row."""
    subscriber_of = {i: s for i, s, _, _ in INTERESTS}
    return {(subscriber_of[i], i, a, 1.0 + a, _canonical(e)) for a, i, e in OLD_MATCHES}


def _reached(database: Database) -> set[tuple[int, int, int, float, str]]:
    with database.session_scope() as session:
        return {
            (m.subscriber_id, m.interest_id, m.article_id, m.score, _canonical(m.explanation))
            for m in session.execute(reached_matches())
        }


def test_upgrade_stores_each_match_once_and_every_reader_reaches_the_same(
    empty_engine: Engine,
) -> None:
    config = _alembic_config(empty_engine)
    command.upgrade(config, BEFORE)
    with empty_engine.begin() as connection:
        _seed_0008(connection)
    command.upgrade(config, MIGRATION)

    with empty_engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT article_id, distinct_id FROM matches ORDER BY article_id, distinct_id")
        ).all()
        links = dict(connection.execute(sa.text("SELECT id, distinct_id FROM interests")).all())
    # 9 per-reader rows become 6: the two spellings of "flood" share rows, and
    # so do the two readers of South Ossetia; the unparsable interest keeps its
    # own, and so does what interest 7 matched before its edit.
    assert len(stored) == 6
    assert links[1] == links[2] == links[7]
    assert links[5] == links[6]
    assert len({links[1], links[3], links[4], links[5]}) == 4

    database = Database(str(empty_engine.url.render_as_string(hide_password=False)))
    try:
        assert _reached(database) == _expected()
        # The match worker's own refresh agrees with the migration's keys: no
        # interest is moved (a move would restart what it reaches from now).
        with database.session_scope() as session:
            IndexCache(default_gazetteer(), get_settings()).refresh(
                session, NOW + timedelta(days=1)
            )
        with database.session_scope() as session:
            after = dict(session.execute(select(Interest.id, Interest.distinct_id)).all())
        assert after == links
        assert _reached(database) == _expected()
    finally:
        database.dispose()


def test_downgrade_fans_the_matches_out_to_readers_again(empty_engine: Engine) -> None:
    config = _alembic_config(empty_engine)
    command.upgrade(config, BEFORE)
    with empty_engine.begin() as connection:
        _seed_0008(connection)
    command.upgrade(config, MIGRATION)
    command.downgrade(config, BEFORE)
    with empty_engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT subscriber_id, interest_id, article_id, score, explanation FROM matches"
            )
        ).all()
    decoded = {(s, i, a, score, _canonical(e)) for s, i, a, score, e in rows}
    assert len(rows) == len(OLD_MATCHES)
    assert decoded == _expected()
