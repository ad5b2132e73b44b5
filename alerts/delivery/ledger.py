"""The delivery ledger: one row per mail promised to one recipient.

A promise is made once (its ``dedup_key`` is unique, so a repeated plan is a
no-op), claimed right before it is handed to SMTP (``queued`` -> ``sending``
in one guarded UPDATE, so two workers never both send it), and settled right
after the server's reply (``sent``, ``failed``, ``bounced``, ``suppressed``,
``skipped``). Only a row between those two marks can be sent twice by a crash.
A row stuck in ``sending`` belonged to a worker that died; the sweeper puts it
back.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    String,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
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


def _in_state(state: DeliveryState) -> ColumnElement[bool]:
    """The guard of a one-row UPDATE by id, written so that no index serves it.

    The planner then goes by the primary key. Given the plain ``state = ...``,
    PostgreSQL with statistics older than the run (a fresh table, or 20,000
    rows planned a second ago) may walk every ``queued`` entry of
    ix_deliveries_state_updated_at for each message sent.
    """
    return type_coerce(Delivery.state, String()).concat("") == state.value


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


def pending(session: Session, delivery_ids: Iterable[int], now: datetime) -> list[Delivery]:
    """The due, queued rows among ``delivery_ids``, read without claiming them.

    Sending composes these first and claims each one only when its message is
    about to go out, so a row spends in ``sending`` only the time of its own
    SMTP exchange.
    """
    ids = list(delivery_ids)
    if not ids:
        return []
    return list(
        session.scalars(
            select(Delivery)
            .where(
                Delivery.id.in_(ids),
                Delivery.state == DeliveryState.QUEUED,
                Delivery.due_at <= now,
            )
            .order_by(Delivery.id)
            .execution_options(populate_existing=True)
        )
    )


def claim_for_sending(
    session: Session, delivery_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    """Claim rows read by ``pending``: ``{id: attempts}`` of those this caller got.

    The same guarded UPDATE as ``claim``, without reading the rows again.
    """
    if not delivery_ids:
        return {}
    rows = session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(delivery_ids),
            _in_state(DeliveryState.QUEUED),
            Delivery.due_at <= now,
        )
        .values(state=DeliveryState.SENDING, attempts=Delivery.attempts + 1, updated_at=now)
        .returning(Delivery.id, Delivery.attempts)
    ).all()
    return {int(delivery_id): int(attempts) for delivery_id, attempts in rows}


def record_sent_and_claim(
    session: Session | Connection, sent_id: int | None, claim_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    """In one UPDATE: ``sent_id`` (just accepted) becomes ``sent``, ``claim_ids``
    become ``sending`` (as ``claim_for_sending``, whose result it returns).

    The common step of a send loop in one statement: a database round trip is
    what a message costs the ledger, so it pays for one (on an autocommit
    connection the statement is its own transaction).
    """
    if sent_id is None and not claim_ids:
        return {}
    parameters: dict[str, Any] = {"now": now, "sent_id": -1 if sent_id is None else sent_id}
    parameters.update({f"claim_{n}": i for n, i in enumerate(claim_ids)})
    rows = session.execute(_sent_and_claim(sent_id is not None, len(claim_ids)), parameters)
    return {int(i): int(attempts) for i, attempts in rows.all() if i != sent_id}


@lru_cache(maxsize=64)
def _sent_and_claim(records_sent: bool, claims: int) -> Update:
    """The statement of ``record_sent_and_claim`` for one shape, built once:
    building it anew for each message cost more CPU than sending the message."""
    columns = Delivery.__table__.c
    sent_id = bindparam("sent_id", type_=columns.id.type)
    now = bindparam("now", type_=columns.updated_at.type)
    wanted: list[ColumnElement[bool]] = []
    if records_sent:
        wanted.append(and_(Delivery.id == sent_id, _in_state(DeliveryState.SENDING)))
    if claims:
        ids = [bindparam(f"claim_{n}", type_=columns.id.type) for n in range(claims)]
        wanted.append(
            and_(Delivery.id.in_(ids), _in_state(DeliveryState.QUEUED), Delivery.due_at <= now)
        )
    sent = Delivery.id == sent_id
    state_type = columns.state.type
    return (
        update(Delivery)
        .where(or_(*wanted))
        .values(
            state=case(
                (sent, literal(DeliveryState.SENT, state_type)),
                else_=literal(DeliveryState.SENDING, state_type),
            ),
            sent_at=case((sent, now), else_=Delivery.sent_at),
            attempts=case((sent, Delivery.attempts), else_=Delivery.attempts + 1),
            reason=case((sent, None), else_=Delivery.reason),
            updated_at=now,
        )
        .returning(Delivery.id, Delivery.attempts)
    )


def close_unsent(
    session: Session,
    delivery_ids: Sequence[int],
    state: DeliveryState,
    now: datetime,
    reason: str | None = None,
) -> list[int]:
    """Settle queued rows that will not be sent (suppressed, nothing to say)
    without passing through ``sending``: no SMTP is involved, so no crash can
    leave them half done. Returns the ids this caller settled."""
    if not delivery_ids:
        return []
    return list(
        session.scalars(
            update(Delivery)
            .where(
                Delivery.id.in_(delivery_ids),
                Delivery.state == DeliveryState.QUEUED,
                Delivery.due_at <= now,
            )
            .values(state=state, updated_at=now, reason=reason)
            .returning(Delivery.id)
        ).all()
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
        .where(Delivery.id.in_(delivery_ids), _in_state(DeliveryState.SENDING))
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
        .where(Delivery.id == delivery.id, _in_state(DeliveryState.SENDING))
        .values(state=DeliveryState.QUEUED, due_at=due, updated_at=now, reason=reason)
    )
    return due


def recover_stuck(
    session: Session,
    now: datetime,
    *,
    stuck_after: timedelta,
    kinds: Sequence[DeliveryKind] | None = None,
) -> list[int]:
    """Rows ``sending`` for longer than ``stuck_after``: their worker died mid-send.

    They go back to ``queued``, due now; a resend reuses the row's Message-ID.
    ``updated_at`` is left as it was (older than ``due_at``), so until a task
    claims them every sweep finds them again: a lost re-queue costs one
    sweeper period, not ``requeue_after``. ``kinds`` limits it (``digests send``).
    """
    return sorted(
        session.scalars(
            update(Delivery)
            .where(
                Delivery.state == DeliveryState.SENDING,
                Delivery.updated_at < now - stuck_after,
                *_of_kinds(kinds),
            )
            .values(
                state=DeliveryState.QUEUED,
                due_at=now,
                updated_at=Delivery.updated_at,
                reason="worker lost",
            )
            .returning(Delivery.id)
        ).all()
    )


def waiting_for_task(
    session: Session,
    now: datetime,
    *,
    requeue_after: timedelta,
    kinds: Sequence[DeliveryKind] | None = None,
) -> list[int]:
    """Queued, due rows that no task is known to be coming for.

    - due since its last touch: a retry whose backoff ended, an alert held
      through quiet hours, a row put back by ``recover_stuck``;
    - untouched for ``requeue_after``: the broker lost the task (a flushed
      Redis, an embedded broker after SIGKILL).
    """
    return sorted(
        session.scalars(
            select(Delivery.id).where(
                Delivery.state == DeliveryState.QUEUED,
                Delivery.due_at <= now,
                or_(
                    Delivery.updated_at < Delivery.due_at,
                    Delivery.updated_at <= now - requeue_after,
                ),
                *_of_kinds(kinds),
            )
        ).all()
    )


def _of_kinds(kinds: Sequence[DeliveryKind] | None) -> list[ColumnElement[bool]]:
    return [] if kinds is None else [Delivery.kind.in_(kinds)]


def count_sending(session: Session, kinds: Sequence[DeliveryKind] | None = None) -> int:
    """Rows in ``sending`` now: in flight somewhere, or left by a process that died."""
    return int(
        session.scalar(
            select(func.count(Delivery.id)).where(
                Delivery.state == DeliveryState.SENDING, *_of_kinds(kinds)
            )
        )
        or 0
    )


def sweep(
    session: Session, now: datetime, *, stuck_after: timedelta, requeue_after: timedelta
) -> list[int]:
    """Ids that need a (new) task because theirs was lost or never existed:
    ``recover_stuck`` and ``waiting_for_task`` together.

    Claims make a spare task harmless; ``touch`` the ids once they are queued.
    """
    recovered = recover_stuck(session, now, stuck_after=stuck_after)
    waiting = waiting_for_task(session, now, requeue_after=requeue_after)
    return sorted({*recovered, *waiting})


def touch(session: Session, delivery_ids: Sequence[int], now: datetime) -> None:
    """Mark rows as just queued, so the sweeper leaves them alone for a while.

    Rows a worker is claiming at this moment are skipped, not waited for
    (``SKIP LOCKED`` on PostgreSQL): thousands of rows locked in scan order
    against a worker's claim in its own order was a deadlock, and a row being
    claimed needs no touch.
    """
    if delivery_ids:
        free = (
            select(Delivery.id)
            .where(Delivery.id.in_(delivery_ids), Delivery.state == DeliveryState.QUEUED)
            .with_for_update(skip_locked=True)
        )
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(free.scalar_subquery()), Delivery.state == DeliveryState.QUEUED)
            .values(updated_at=now)
        )
