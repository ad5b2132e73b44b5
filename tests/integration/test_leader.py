"""The clock's leader lease, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.db import Database
from alerts.leader import release, try_lead

TTL = timedelta(seconds=60)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def lead(database: Database, holder: str, now: datetime) -> bool:
    with database.session_scope() as session:
        return try_lead(session, "clock", holder, now, TTL)


def test_one_holder_at_a_time_and_takeover_after_expiry(database: Database) -> None:
    assert lead(database, "a", NOW)
    assert not lead(database, "b", NOW + timedelta(seconds=1))
    assert lead(database, "a", NOW + timedelta(seconds=30))  # renewal
    assert not lead(database, "b", NOW + timedelta(seconds=80))  # renewed lease still live
    assert lead(database, "b", NOW + timedelta(seconds=91))  # a stopped renewing
    assert not lead(database, "a", NOW + timedelta(seconds=92))


def test_release_hands_over_at_once(database: Database) -> None:
    assert lead(database, "a", NOW)
    with database.session_scope() as session:
        release(session, "clock", "a", NOW + timedelta(seconds=5))
    assert lead(database, "b", NOW + timedelta(seconds=6))
