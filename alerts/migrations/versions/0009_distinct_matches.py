"""matches stored per distinct interest

Revision ID: 0009_distinct_matches
Revises: 0008_bounce_events

Interests that mean the same (normalised query and regions, the index's shared
entry) point at one ``distinct_interests`` row, and a match is stored once per
(article, distinct interest). Existing matches are converted: each interest is
keyed with the matching code itself (an interest that no longer parses gets a
distinct interest of its own, so its old matches stay readable), and each
(article, distinct interest) keeps one of its rows. ``interest_links`` says
from when (and, once an edit closed it, until when) an interest reached a
distinct interest's matches: each interest gets an open link from its last
edit, and one edited after some of its matches also gets a closed link to a
distinct interest of its own holding those older rows (what they matched then
stays the reader's, as it did with a row per reader).

On SQLite ``interests`` is recreated by the batch alter, and dropping it would
cascade into every table with a foreign key to it: the links and the rows are
set aside in key-less scratch tables first.
"""

import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import alerts.models

revision = "0009_distinct_matches"
down_revision = "0008_bounce_events"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = alerts.models.UTCDateTime(timezone=True)
CHUNK = 1_000


def _key(query: str | None, regions: Any, interest_id: int, gazetteer: Any) -> str:
    from alerts.matching.index import Interest, match_key, prepare_interest
    from alerts.matching.query import QueryError

    try:
        prepared = prepare_interest(Interest(str(interest_id), query, tuple(regions or ())), gazetteer)
    except (QueryError, ValueError):
        return hashlib.sha256(f"unparsed:{interest_id}".encode()).hexdigest()
    return match_key(prepared)


def _matches_table(name: str, *owner: sa.Column[Any], keys: bool) -> None:
    """A ``matches`` table; ``owner`` are the columns that say whose match it is.

    Scratch copies are made without keys: on SQLite a batch operation recreates
    ``interests`` (drop and rename), and a cascading foreign key to it would
    empty the copy on the way.
    """
    columns: list[Any] = [
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("article_id", BIG_ID, nullable=False),
        *owner,
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("explanation", JSON, nullable=False),
        sa.Column("matched_at", UTC_TIME, nullable=False),
    ]
    if keys:
        columns.append(sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")))
    op.create_table(name, *columns)


def upgrade() -> None:
    from alerts.db import utcnow
    from alerts.regions import default_gazetteer

    connection = op.get_bind()
    op.create_table(
        "distinct_interests",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("match_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distinct_interests")),
        sa.UniqueConstraint("match_key", name=op.f("uq_distinct_interests_match_key")),
    )
    interests = sa.table(
        "interests",
        sa.column("id", BIG_ID),
        sa.column("query", sa.String()),
        sa.column("regions", JSON),
        sa.column("updated_at", UTC_TIME),
        sa.column("distinct_id", BIG_ID),
        sa.column("distinct_since", UTC_TIME),
    )
    distinct = sa.table(
        "distinct_interests",
        sa.column("id", BIG_ID),
        sa.column("match_key", sa.String()),
        sa.column("created_at", UTC_TIME),
    )
    rows = connection.execute(
        sa.select(interests.c.id, interests.c.query, interests.c.regions, interests.c.updated_at)
    ).all()
    places = default_gazetteer() if rows else None
    keys = {row.id: _key(row.query, row.regions, row.id, places) for row in rows}
    now = utcnow()
    unique_keys = sorted(set(keys.values()))
    for start in range(0, len(unique_keys), CHUNK):
        connection.execute(
            sa.insert(distinct),
            [{"match_key": k, "created_at": now} for k in unique_keys[start : start + CHUNK]],
        )
    ids = dict(connection.execute(sa.select(distinct.c.match_key, distinct.c.id)).all())

    # Each interest's links, kept aside while ``interests`` is altered (recreated
    # on SQLite): an open one from its last edit, and for an interest edited
    # after some of its matches, a closed one to a distinct interest of their
    # own, so what the old meaning matched stays the reader's.
    op.create_table(
        "migrating_links",
        sa.Column("interest_id", BIG_ID, nullable=False),
        sa.Column("distinct_id", BIG_ID, nullable=False),
        sa.Column("since", UTC_TIME, nullable=False),
        sa.Column("until", UTC_TIME, nullable=True),
    )
    links_table = sa.table(
        "migrating_links",
        sa.column("interest_id", BIG_ID),
        sa.column("distinct_id", BIG_ID),
        sa.column("since", UTC_TIME),
        sa.column("until", UTC_TIME),
    )
    old_matches = sa.table(
        "matches", sa.column("interest_id", BIG_ID), sa.column("matched_at", UTC_TIME)
    )
    edited = dict(
        connection.execute(
            sa.select(old_matches.c.interest_id, sa.func.min(old_matches.c.matched_at))
            .join(interests, interests.c.id == old_matches.c.interest_id)
            .where(old_matches.c.matched_at < interests.c.updated_at)
            .group_by(old_matches.c.interest_id)
        ).all()
    )
    edited_keys = {
        interest_id: hashlib.sha256(f"edited:{interest_id}".encode()).hexdigest()
        for interest_id in edited
    }
    keys_in_order = sorted(edited_keys.values())
    for start in range(0, len(keys_in_order), CHUNK):
        connection.execute(
            sa.insert(distinct),
            [{"match_key": k, "created_at": now} for k in keys_in_order[start : start + CHUNK]],
        )
    ids = dict(connection.execute(sa.select(distinct.c.match_key, distinct.c.id)).all())
    links = [
        {
            "interest_id": row.id,
            "distinct_id": ids[keys[row.id]],
            "since": row.updated_at,
            "until": None,
        }
        for row in rows
    ]
    updated = {row.id: row.updated_at for row in rows}
    links += [
        {
            "interest_id": interest_id,
            "distinct_id": ids[key],
            "since": edited[interest_id],
            "until": updated[interest_id],
        }
        for interest_id, key in edited_keys.items()
    ]
    for start in range(0, len(links), CHUNK):
        connection.execute(sa.insert(links_table), links[start : start + CHUNK])

    # One row of each (article, distinct interest), moved aside before the old table goes.
    _matches_table(
        "converted_matches", sa.Column("distinct_id", BIG_ID, nullable=False), keys=False
    )
    within = (
        " ON l{n}.interest_id = m{n}.interest_id AND m{n}.matched_at >= l{n}.since"
        " AND (l{n}.until IS NULL OR m{n}.matched_at < l{n}.until)"
    )
    connection.execute(
        sa.text(
            "INSERT INTO converted_matches"
            " (id, article_id, distinct_id, score, explanation, matched_at)"
            " SELECT m.id, m.article_id, l.distinct_id, m.score, m.explanation, m.matched_at"
            " FROM matches m JOIN migrating_links l" + within.format(n="") +
            " WHERE m.id IN (SELECT min(m2.id) FROM matches m2"
            "  JOIN migrating_links l2" + within.format(n="2") +
            "  GROUP BY m2.article_id, l2.distinct_id)"
        )
    )
    op.drop_table("matches")

    with op.batch_alter_table("interests") as batch:
        batch.add_column(sa.Column("distinct_id", BIG_ID, nullable=True))
        batch.add_column(sa.Column("distinct_since", UTC_TIME, nullable=True))
        batch.create_foreign_key(
            op.f("fk_interests_distinct_id_distinct_interests"),
            "distinct_interests",
            ["distinct_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_interests_distinct_id"), ["distinct_id"])
    current = [link for link in links if link["until"] is None]
    for start in range(0, len(current), CHUNK):
        connection.execute(
            sa.update(interests)
            .where(interests.c.id == sa.bindparam("interest"))
            .values(distinct_id=sa.bindparam("distinct"), distinct_since=sa.bindparam("at")),
            [
                {"interest": link["interest_id"], "distinct": link["distinct_id"], "at": link["since"]}
                for link in current[start : start + CHUNK]
            ],
        )
    op.create_table(
        "interest_links",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("interest_id", BIG_ID, nullable=False),
        sa.Column("distinct_id", BIG_ID, nullable=False),
        sa.Column("since", UTC_TIME, nullable=False),
        sa.Column("until", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["distinct_id"],
            ["distinct_interests.id"],
            name=op.f("fk_interest_links_distinct_id_distinct_interests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["interest_id"],
            ["interests.id"],
            name=op.f("fk_interest_links_interest_id_interests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interest_links")),
    )
    op.create_index(op.f("ix_interest_links_distinct_id"), "interest_links", ["distinct_id"])
    op.create_index("ix_interest_links_interest_id", "interest_links", ["interest_id", "since"])
    connection.execute(
        sa.text(
            "INSERT INTO interest_links (interest_id, distinct_id, since, until)"
            " SELECT interest_id, distinct_id, since, until FROM migrating_links"
            " ORDER BY interest_id, since"
        )
    )
    op.drop_table("migrating_links")

    op.create_table(
        "matches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("article_id", BIG_ID, nullable=False),
        sa.Column("distinct_id", BIG_ID, nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("explanation", JSON, nullable=False),
        sa.Column("matched_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_matches_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["distinct_id"],
            ["distinct_interests.id"],
            name=op.f("fk_matches_distinct_id_distinct_interests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matches")),
        sa.UniqueConstraint("article_id", "distinct_id", name=op.f("uq_matches_article_id")),
    )
    op.create_index("ix_matches_distinct_matched_at", "matches", ["distinct_id", "matched_at"])
    connection.execute(
        sa.text(
            "INSERT INTO matches (article_id, distinct_id, score, explanation, matched_at)"
            " SELECT article_id, distinct_id, score, explanation, matched_at"
            " FROM converted_matches ORDER BY id"
        )
    )
    op.drop_table("converted_matches")


def downgrade() -> None:
    """Fan the stored matches out to every interest that reaches them again."""
    owner = (
        sa.Column("interest_id", BIG_ID, nullable=False),
        sa.Column("subscriber_id", BIG_ID, nullable=False),
    )
    _matches_table("matches_per_interest", *owner, keys=False)
    op.get_bind().execute(
        sa.text(
            "INSERT INTO matches_per_interest"
            " (id, article_id, interest_id, subscriber_id, score, explanation, matched_at)"
            " SELECT row_number() OVER (ORDER BY m.id, i.id, l.id),"
            " m.article_id, i.id, i.subscriber_id, m.score, m.explanation, m.matched_at"
            " FROM matches m JOIN interest_links l ON l.distinct_id = m.distinct_id"
            " JOIN interests i ON i.id = l.interest_id"
            " WHERE m.matched_at >= l.since AND (l.until IS NULL OR m.matched_at < l.until)"
        )
    )
    op.drop_table("matches")
    op.drop_table("interest_links")
    with op.batch_alter_table("interests") as batch:
        batch.drop_index(op.f("ix_interests_distinct_id"))
        batch.drop_constraint(
            op.f("fk_interests_distinct_id_distinct_interests"), type_="foreignkey"
        )
        batch.drop_column("distinct_since")
        batch.drop_column("distinct_id")
    op.drop_table("distinct_interests")
    op.create_table(
        "matches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("article_id", BIG_ID, nullable=False),
        sa.Column("interest_id", BIG_ID, nullable=False),
        sa.Column("subscriber_id", BIG_ID, nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("explanation", JSON, nullable=False),
        sa.Column("matched_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_matches_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["interest_id"],
            ["interests.id"],
            name=op.f("fk_matches_interest_id_interests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_matches_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matches")),
        sa.UniqueConstraint("article_id", "interest_id", name=op.f("uq_matches_article_id")),
    )
    op.create_index(
        "ix_matches_subscriber_matched_at", "matches", ["subscriber_id", "matched_at"]
    )
    op.get_bind().execute(
        sa.text(
            "INSERT INTO matches"
            " (article_id, interest_id, subscriber_id, score, explanation, matched_at)"
            " SELECT article_id, interest_id, subscriber_id, score, explanation, matched_at"
            " FROM matches_per_interest ORDER BY id"
        )
    )
    op.drop_table("matches_per_interest")
