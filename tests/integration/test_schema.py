"""Migrations build the schema the models describe, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError

from alerts.db import Database, schema_is_current
from alerts.models import Base, Subscriber, SubscriberStatus


def test_migrations_match_the_models(database: Database) -> None:
    assert schema_is_current(database.engine)
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_times_come_back_aware_in_utc(database: Database) -> None:
    tbilisi = timezone(timedelta(hours=4))
    confirmed = datetime(2026, 3, 29, 7, 30, tzinfo=tbilisi)
    with database.session_scope() as session:
        session.add(Subscriber(email="reader@example.org", confirmed_at=confirmed))
    with database.session_scope() as session:
        subscriber = session.query(Subscriber).one()
        assert subscriber.confirmed_at == confirmed
        assert subscriber.confirmed_at.tzinfo == UTC
        assert subscriber.status is SubscriberStatus.PENDING


def test_naive_times_are_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), database.session_scope() as session:
        session.add(Subscriber(email="naive@example.org", confirmed_at=datetime(2026, 1, 1)))


def test_email_is_unique(database: Database) -> None:
    with database.session_scope() as session:
        session.add(Subscriber(email="twice@example.org"))
    with pytest.raises(IntegrityError), database.session_scope() as session:
        session.add(Subscriber(email="twice@example.org"))
