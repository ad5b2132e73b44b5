"""Returned mail changes readers' standing by the bounce policy, and `alerts bounces
serve` records what an MTA hands it over LMTP before it says 250."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.bounces import BounceReport, bounce_score, classify, reactivate, record
from alerts.config import get_settings
from alerts.db import Database
from alerts.delivery.verp import verp_address
from alerts.models import (
    BounceEvent,
    Delivery,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    WebhookDelivery,
)
from tests.conftest import REPO_ROOT, free_port, wait_until
from tests.factories import reader_with_a_sent_digest
from tests.unit.test_bounces import dsn

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _apply(database: Database, report: BounceReport, at: datetime = NOW) -> list[str]:
    with database.session_scope() as session:
        return [r.action for r in record(session, report, get_settings(), at)]


def _standing(database: Database, reader_id: int) -> tuple[SubscriberStatus, str | None]:
    with database.session_scope() as session:
        reader = session.get(Subscriber, reader_id)
        assert reader is not None
        reason = session.scalar(select(Suppression.reason).where(Suppression.email == reader.email))
        return reader.status, reason


def test_a_proven_hard_bounce_suppresses_at_once_and_tells_the_webhooks(
    database: Database,
) -> None:
    reader, delivery = reader_with_a_sent_digest(database)
    assert _apply(database, BounceReport("hard", [], "5.1.1", delivery)) == ["suppressed"]
    assert _standing(database, reader) == (SubscriberStatus.BOUNCED, SuppressionReason.HARD_BOUNCE)
    with database.session_scope() as session:
        assert session.get(Delivery, delivery).state is DeliveryState.BOUNCED
        events = session.scalars(select(WebhookDelivery.event)).all()
    assert events == ["delivery.bounced"]


def test_soft_bounces_add_up_fade_and_cross_the_threshold(database: Database) -> None:
    reader, _delivery = reader_with_a_sent_digest(database)
    soft = BounceReport("soft", ["reader@example.org"], "4.2.2")
    for day in range(4):
        assert _apply(database, soft, NOW + timedelta(hours=day)) == ["scored"]
    with database.session_scope() as session:
        later = bounce_score(session, "reader@example.org", get_settings(), NOW + timedelta(days=6))
        fresh = bounce_score(
            session, "reader@example.org", get_settings(), NOW + timedelta(hours=4)
        )
    assert 0 < later < fresh < 5
    assert _standing(database, reader) == (SubscriberStatus.CONFIRMED, None)
    # Five bounces weigh 5, but the first four have faded a little: still under.
    assert _apply(database, soft, NOW + timedelta(hours=5)) == ["scored"]
    assert _apply(database, soft, NOW + timedelta(hours=5)) == ["suppressed"]
    assert _standing(database, reader)[0] is SubscriberStatus.BOUNCED


def test_an_unproven_hard_bounce_only_scores(database: Database) -> None:
    reader, _delivery = reader_with_a_sent_digest(database)
    assert _apply(database, BounceReport("hard", ["reader@example.org"], "5.1.1")) == ["scored"]
    assert _standing(database, reader) == (SubscriberStatus.CONFIRMED, None)


def test_a_complaint_suppresses_and_unsubscribes(database: Database) -> None:
    reader, delivery = reader_with_a_sent_digest(database)
    assert _apply(database, BounceReport("complaint", [], None, delivery)) == ["suppressed"]
    assert _standing(database, reader) == (
        SubscriberStatus.UNSUBSCRIBED,
        SuppressionReason.COMPLAINT,
    )


def test_a_mailto_unsubscribe_takes_effect_at_once(database: Database) -> None:
    reader, _delivery = reader_with_a_sent_digest(database)
    report = BounceReport("unsubscribe", ["reader@example.org"])
    assert _apply(database, report) == ["unsubscribed"]
    assert _standing(database, reader) == (SubscriberStatus.UNSUBSCRIBED, None)


def test_strangers_auto_replies_and_erased_readers_change_nothing(database: Database) -> None:
    reader, _delivery = reader_with_a_sent_digest(database)
    assert _apply(database, BounceReport("hard", ["stranger@example.org"], "5.1.1")) == [
        "unknown recipient"
    ]
    assert _apply(database, BounceReport("auto-reply", ["reader@example.org"])) == ["ignored"]
    assert _apply(database, BounceReport("complaint", [], None, delivery=999_999)) == []
    with database.session_scope() as session:
        assert session.scalars(select(BounceEvent)).all() == []
        assert session.scalars(select(Suppression)).all() == []
    assert _standing(database, reader) == (SubscriberStatus.CONFIRMED, None)


def test_an_admin_reactivates_a_bouncedreader_with_a_sent_digest(database: Database) -> None:
    reader, delivery = reader_with_a_sent_digest(database)
    _apply(database, BounceReport("hard", [], "5.1.1", delivery))
    with database.session_scope() as session:
        subscriber = session.get(Subscriber, reader)
        assert subscriber is not None
        assert reactivate(session, "test", subscriber)
    assert _standing(database, reader) == (SubscriberStatus.CONFIRMED, None)


@pytest.fixture
def receiver(database: Database, isolated_settings: Path) -> Iterator[int]:
    """`alerts bounces serve` as an MTA's transport would run it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_DATA_DIR=str(isolated_settings),
        ALERTS_SECRET_KEY="test-secret",
        ALERTS_BOUNCE_DOMAIN="news.example.org",
        PYTHONPATH=str(REPO_ROOT),
    )
    if database.url.startswith("postgresql"):
        env["ALERTS_DATABASE_URL"] = database.url
    process = subprocess.Popen(
        [sys.executable, "-m", "alerts", "bounces", "serve", "--port", str(port)], env=env
    )

    def listening() -> bool:
        try:
            smtplib.LMTP("127.0.0.1", port, timeout=2).quit()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, 60, "the LMTP receiver")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_lmtp_receiver_records_a_dsn_for_its_verp_address(
    database: Database, receiver: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_SECRET_KEY", "test-secret")
    get_settings.cache_clear()
    reader, delivery = reader_with_a_sent_digest(database, "gone@reader.example")
    verp = verp_address("bounces", "news.example.org", delivery, "test-secret")
    message = dsn("failed", "5.1.1", verp=verp)
    assert classify(message, "test-secret").delivery == delivery
    with smtplib.LMTP("127.0.0.1", receiver, timeout=30) as client:
        refused = client.sendmail("", [verp], message)
    assert refused == {}
    assert _standing(database, reader) == (SubscriberStatus.BOUNCED, SuppressionReason.HARD_BOUNCE)
