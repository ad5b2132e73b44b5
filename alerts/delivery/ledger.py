"""The delivery ledger: one row per mail promised to one recipient.

A promise is made once (its ``dedup_key`` is unique, so a repeated plan is a
no-op), claimed before it is sent (``queued`` -> ``sending`` in one guarded
UPDATE, so two workers never both send it), and settled after
(``sent``, ``failed``, ``bounced``, ``suppressed``, ``skipped``). A row stuck
in ``sending`` belonged to a worker that died; the sweeper puts it back.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from alerts.models import Delivery, DeliveryKind, DeliveryState

# Retries of a temporary failure: 1, 2, 4, ... minutes (with jitter), then failed.
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 6 * 60 * 60
RETRY_JITTER = 0.25
MAX_ATTEMPTS = 8
# Rows per INSERT statement when promising many mails at once.
PROMISE_CHUNK = 1000


def alert_key(subscriber_id: int, article_id: int) -> str:
    return f"alert.{subscriber_id}.{article_id}.email"


def digest_key(subscriber_id: int, window: str) -> str:
    return f"digest.{subscriber_id}.{window.replace(':', '.')}"


def newsletter_key(newsletter_id: int, subscriber_id: int) -> str:
    return f"newsletter.{newsletter_id}.{subscriber_id}"


@dataclass(frozen=True)
class Promise:
    """A mail to be sent once: what the ledger row starts with."""

    dedup_key: str
    kind: DeliveryKind
    recipient: str
    message_id: str
    due_at: datetime
    subscriber_id: int | None = None
    article_id: int | None = None
    newsletter_id: int | None = None
    payload: dict[str, Any] | None = None


def _insert_ignoring_duplicates(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Delivery).on_conflict_do_nothing(index_elements=["dedup_key"])
    if dialect == "sqlite":
        return sqlite.insert(Delivery).on_conflict_do_nothing(index_elements=["dedup_key"])
    raise NotImplementedError(f"no insert-or-ignore for {dialect}")


def promise(session: Session, promises: Sequence[Promise], now: datetime) -> list[int]:
    """Record promises; returns the ids of the ones that are new.

    An existing key is left untouched, so planning the same window or the
    same alert twice promises one mail.
    """
    new_ids: list[int] = []
    for start in range(0, len(promises), PROMISE_CHUNK):
        rows = [
            {
                "dedup_key": p.dedup_key,
                "kind": p.kind,
                "state": DeliveryState.QUEUED,
                "recipient": p.recipient,
                "message_id": p.message_id,
                "due_at": p.due_at,
                "subscriber_id": p.subscriber_id,
                "article_id": p.article_id,
                "newsletter_id": p.newsletter_id,
                "payload": p.payload or {},
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for p in promises[start : start + PROMISE_CHUNK]
        ]
        statement = _insert_ignoring_duplicates(session).returning(Delivery.id)
        new_ids.extend(session.scalars(statement, rows).all())
    return new_ids


def claim(session: Session, delivery_ids: Iterable[int], now: datetime) -> list[Delivery]:
    """Take the due, queued rows among ``delivery_ids`` for sending.

    The guarded UPDATE is the lock: a row another worker claimed, or one
    already settled, is not returned, so a redelivered task sends nothing.
    """
    ids = list(delivery_ids)
    if not ids:
        return []
    claimed = session.scalars(
        update(Delivery)
        .where(
            Delivery.id.in_(ids),
            Delivery.state == DeliveryState.QUEUED,
            Delivery.due_at <= now,
        )
        .values(state=DeliveryState.SENDING, attempts=Delivery.attempts + 1, updated_at=now)
        .returning(Delivery.id)
    ).all()
    if not claimed:
        return []
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.id.in_(claimed))
            .order_by(Delivery.id)
            .execution_options(populate_existing=True)
        )
    )


def settle(
    session: Session,
    delivery_ids: Sequence[int],
    state: DeliveryState,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Record the outcome of claimed rows."""
    if not delivery_ids:
        return
    values: dict[str, Any] = {"state": state, "updated_at": now, "reason": reason}
    if state is DeliveryState.SENT:
        values["sent_at"] = now
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.state == DeliveryState.SENDING)
        .values(**values)
    )


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter, so a relay that comes back is not stampeded."""
    base = min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS)
    jitter = (rng or random).uniform(-RETRY_JITTER, RETRY_JITTER)
    return timedelta(seconds=base * (1 + jitter))


def defer(session: Session, delivery: Delivery, now: datetime, reason: str) -> datetime | None:
    """After a temporary failure: back to the queue with a later due time, or
    failed for good after MAX_ATTEMPTS. Returns the new due time, if any."""
    if delivery.attempts >= MAX_ATTEMPTS:
        settle(session, [delivery.id], DeliveryState.FAILED, now, f"gave up: {reason}")
        return None
    due = now + retry_delay(delivery.attempts)
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.state == DeliveryState.SENDING)
        .values(state=DeliveryState.QUEUED, due_at=due, updated_at=now, reason=reason)
    )
    return due


def sweep(
    session: Session, now: datetime, *, stuck_after: timedelta, requeue_after: timedelta
) -> list[int]:
    """Ids that need a (new) task because theirs was lost or never existed.

    - ``sending`` for longer than ``stuck_after``: the worker died mid-send;
      back to ``queued`` (a duplicate send reuses the row's Message-ID);
    - ``queued`` and due since its last touch: a retry whose backoff ended, or
      an alert held through quiet hours;
    - ``queued``, due, and untouched for ``requeue_after``: the broker lost the
      task (a flushed Redis, an embedded broker after SIGKILL).

    Claims make a spare task harmless; ``touch`` the ids once they are queued.
    """
    recovered = session.scalars(
        update(Delivery)
        .where(Delivery.state == DeliveryState.SENDING, Delivery.updated_at < now - stuck_after)
        .values(state=DeliveryState.QUEUED, due_at=now, updated_at=now, reason="worker lost")
        .returning(Delivery.id)
    ).all()
    waiting = session.scalars(
        select(Delivery.id).where(
            Delivery.state == DeliveryState.QUEUED,
            Delivery.due_at <= now,
            or_(Delivery.updated_at < Delivery.due_at, Delivery.updated_at <= now - requeue_after),
        )
    ).all()
    return sorted({*recovered, *waiting})


def touch(session: Session, delivery_ids: Sequence[int], now: datetime) -> None:
    """Mark rows as just queued, so the sweeper leaves them alone for a while."""
    if delivery_ids:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.state == DeliveryState.QUEUED)
            .values(updated_at=now)
        )
