"""Rows that many tests need, made one way."""

from __future__ import annotations

from alerts.db import Database
from alerts.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
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
