"""bounce events

Revision ID: 0008_bounce_events
Revises: 0007_match_ledger
"""

import sqlalchemy as sa
from alembic import op

import alerts.models

revision = "0008_bounce_events"
down_revision = "0007_match_ledger"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("subscriber_id", BIG_ID, nullable=True),
        sa.Column("delivery_id", BIG_ID, nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("received_at", alerts.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_bounce_events_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_bounce_events_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_events")),
    )
    op.create_index(
        "ix_bounce_events_email_received_at", "bounce_events", ["email", "received_at"]
    )
    op.create_index(
        op.f("ix_bounce_events_subscriber_id"), "bounce_events", ["subscriber_id"]
    )


def downgrade() -> None:
    op.drop_table("bounce_events")
