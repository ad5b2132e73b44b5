"""Rows that many tests need, made one way."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from alerts.db import Database
from alerts.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    DistinctInterest,
    Interest,
    Match,
    Subscriber,
    SubscriberStatus,
    WebhookEndpoint,
)


def reader_with_a_sent_digest(
    database: Database, email: str = "reader@example.org"
) -> tuple[int, int]:
    """A confirmed reader with one sent digest: (subscriber id, delivery id)."""
    with database.session_scope() as session:
        reader = Subscriber(email=email, status=SubscriberStatus.CONFIRMED)
        session.add(reader)
        session.flush()
        delivery = Delivery(
            dedup_key=f"digest:{reader.id}:w",
            kind=DeliveryKind.DIGEST,
            state=DeliveryState.SENT,
            subscriber_id=reader.id,
            recipient=email,
            message_id=f"<{reader.id}@test>",
        )
        session.add(delivery)
        session.add(
            WebhookEndpoint(
                url="https://hooks.example.org/x", events=["delivery.bounced"], secret="s"
            )
        )
        session.flush()
        return reader.id, delivery.id


LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def stored_match(
    session: Session,
    interest_id: int,
    article_id: int,
    *,
    matched_at: datetime,
    score: float = 0.0,
    explanation: dict[str, Any] | None = None,
) -> Match:
    """A match as the worker stores it: under the interest's distinct interest
    (one of its own, reaching it since long ago, when it has none yet)."""
    interest = session.get(Interest, interest_id)
    assert interest is not None
    if interest.distinct_id is None:
        key = hashlib.sha256(f"test-interest:{interest_id}".encode()).hexdigest()
        distinct = DistinctInterest(match_key=key)
        session.add(distinct)
        session.flush()
        interest.distinct_id = distinct.id
        interest.distinct_since = LONG_AGO
    match = Match(
        article_id=article_id,
        distinct_id=interest.distinct_id,
        score=score,
        explanation=explanation or {},
        matched_at=matched_at,
    )
    session.add(match)
    session.flush()
    return match
