"""match ledger: every article carries its matching state

Revision ID: 0007_match_ledger
Revises: 0006_sessions_and_reader_tokens
Create Date: 2026-12-03 12:50:00

Existing articles are marked ``done`` when they have a match or were ingested
more than RECENT before the migration: the old code matched them, or their
alerts are too old to be worth sending now. Recent articles without any match
become ``pending``, so the sweeper matches them once more; that recovers an
article whose match task the old code lost, and costs nothing for one that
simply matched nobody (a stored match is never stored twice).
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import alerts.models

revision = "0007_match_ledger"
down_revision = "0006_sessions_and_reader_tokens"
branch_labels = None
depends_on = None

RECENT = timedelta(hours=1)
PENDING_ONLY = sa.text("match_state = 'pending'")


def upgrade() -> None:
    # A server default fills the existing rows without rewriting the table on
    # PostgreSQL 11+; the application always writes the column itself.
    op.add_column(
        "articles",
        sa.Column(
            "match_state",
            sa.Enum("pending", "done", name="matchstate", native_enum=False, length=20),
            nullable=False,
            server_default="done",
        ),
    )
    op.add_column(
        "articles",
        sa.Column("match_queued_at", alerts.models.UTCDateTime(timezone=True), nullable=True),
    )
    articles = sa.table(
        "articles",
        sa.column("id", sa.BigInteger()),
        sa.column("match_state", sa.String(20)),
        sa.column("ingested_at", alerts.models.UTCDateTime(timezone=True)),
    )
    matches = sa.table("matches", sa.column("article_id", sa.BigInteger()))
    cutoff = datetime.now(UTC) - RECENT
    op.execute(
        articles.update()
        .where(
            articles.c.ingested_at >= cutoff,
            ~sa.exists().where(matches.c.article_id == articles.c.id),
        )
        .values(match_state="pending")
    )
    if op.get_bind().dialect.name == "postgresql":
        # Metadata only there; SQLite would have to rebuild the table for it.
        op.alter_column("articles", "match_state", server_default=None)
    op.create_index(
        "ix_articles_match_pending",
        "articles",
        ["match_queued_at"],
        postgresql_where=PENDING_ONLY,
        sqlite_where=PENDING_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_articles_match_pending", table_name="articles")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("match_queued_at")
        batch.drop_column("match_state")
