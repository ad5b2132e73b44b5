"""What admins do to the subscriber base, and the figures they watch.

Every function takes a session and flushes at most; the web layer (or the
API) owns the transaction and writes the audit entry beside the change.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload

from alerts import audit, metrics
from alerts.audit import Actor
from alerts.bounces import DayOfReturns, daily_returns, suppress
from alerts.config import Settings
from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.health import queue_depths
from alerts.models import (
    Article,
    Delivery,
    DeliveryState,
    Frequency,
    Interest,
    Source,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from alerts.retention import database_bytes, retention_days, storage_sizes
from alerts.subscribers import (
    REGION_SEPARATOR,
    SubscriberError,
    neutralised_cell,
    parse_frequency,
    parse_language,
    parse_send_at,
    parse_timezone,
)

log = logging.getLogger("alerts.admin")

SEARCH_PAGE_SIZE = 50
SUPPRESSION_PAGE_SIZE = 100
RECENT_ERRORS = 20
NAME_LENGTH = 200
WEEK_DAYS = 7
# Celery's default queue is a Redis list of this name.
SOURCE_ERROR_STATUS = "error"  # what alerts.ingest.service records for a failed poll
# The first six columns are the ones `alerts subscribers import` reads, so an
# export can be imported elsewhere; the rest record consent and state.
EXPORT_COLUMNS = (
    "email",
    "query",
    "regions",
    "frequency",
    "timezone",
    "confirmed",
    "id",
    "name",
    "status",
    "language",
    "send_at",
    "paused",
    "consent_source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "other_interests",
)


# --- search -------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberFilter:
    email: str = ""
    status: SubscriberStatus | None = None
    frequency: Frequency | None = None


@dataclass
class SearchPage:
    subscribers: list[Subscriber]
    total: int
    page: int
    pages: int


def _matching(wanted: SubscriberFilter) -> list[ColumnElement[bool]]:
    """The one subscriber filter: the console's search and the API's list."""
    conditions: list[ColumnElement[bool]] = []
    if wanted.email.strip():
        # autoescape: a % or _ typed by the admin is a character, not a wildcard.
        term = wanted.email.strip().lower()
        conditions.append(Subscriber.email.contains(term, autoescape=True))
    if wanted.status is not None:
        conditions.append(Subscriber.status == wanted.status)
    if wanted.frequency is not None:
        conditions.append(Subscriber.frequency == wanted.frequency)
    return conditions


def search_subscribers(
    session: Session, wanted: SubscriberFilter, page: int = 1, per_page: int = SEARCH_PAGE_SIZE
) -> SearchPage:
    """Subscribers whose address contains ``wanted.email`` (as typed, no wildcards)."""
    conditions = _matching(wanted)
    total = int(session.scalar(select(func.count(Subscriber.id)).where(*conditions)) or 0)
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    rows = session.scalars(
        select(Subscriber)
        .where(*conditions)
        .order_by(Subscriber.email)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return SearchPage(subscribers=list(rows), total=total, page=page, pages=pages)


def list_subscribers(
    session: Session, wanted: SubscriberFilter, limit: int, offset: int = 0
) -> list[Subscriber]:
    """The same search in id order by offset, interests loaded (the API's pages)."""
    return list(
        session.scalars(
            select(Subscriber)
            .options(selectinload(Subscriber.interests))
            .where(*_matching(wanted))
            .order_by(Subscriber.id)
            .limit(limit)
            .offset(offset)
        )
    )


def recent_deliveries(
    session: Session, subscriber_id: int, limit: int = RECENT_ERRORS
) -> list[tuple[Delivery, str | None]]:
    """A subscriber's latest deliveries with the article title, when there is one."""
    rows = session.execute(
        select(Delivery, Article.title)
        .outerjoin(Article, Article.id == Delivery.article_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    return [(delivery, title) for delivery, title in rows]


# --- edit, suspend, erase -------------------------------------------------------


@dataclass(frozen=True)
class SubscriberChanges:
    """Fields an admin may change; None leaves a field as it is."""

    name: str | None = None
    frequency: str | None = None
    timezone: str | None = None
    send_at: str | time | None = None
    weekly_day: int | None = None
    language: str | None = None
    paused: bool | None = None


def _validated(changes: SubscriberChanges) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if changes.name is not None:
        name = changes.name.strip()
        if len(name) > NAME_LENGTH:
            raise SubscriberError(f"name is longer than {NAME_LENGTH} characters")
        values["name"] = name or None
    if changes.frequency is not None:
        values["frequency"] = parse_frequency(changes.frequency)
    if changes.timezone is not None:
        values["timezone"] = parse_timezone(changes.timezone)
    if changes.send_at is not None:
        values["send_at"] = parse_send_at(changes.send_at)
    if changes.weekly_day is not None:
        if not 0 <= changes.weekly_day < WEEK_DAYS:
            raise SubscriberError("weekly day is 0 (Monday) to 6 (Sunday)")
        values["weekly_day"] = changes.weekly_day
    if changes.language is not None:
        values["language"] = parse_language(changes.language)
    if changes.paused is not None:
        values["paused"] = changes.paused
    return values


def edit_subscriber(
    session: Session,
    actor: Actor,
    subscriber: Subscriber,
    changes: SubscriberChanges,
    *,
    via: str | None = None,
) -> list[str]:
    """Apply the changes (all or none: each is checked first), audited; the changed fields."""
    changed = []
    for name, value in _validated(changes).items():
        if getattr(subscriber, name) != value:
            setattr(subscriber, name, value)
            changed.append(name)
    session.flush()
    if changed:
        audit.record(
            session,
            actor,
            "subscriber.edit",
            "subscriber",
            subscriber.id,
            {"fields": changed},
            via=via,
        )
    return changed


def suspend(
    session: Session, actor: Actor, subscriber: Subscriber, *, via: str | None = None
) -> bool:
    """Stop all mail to a subscriber until an admin lifts it; False if already suspended."""
    if subscriber.status is SubscriberStatus.SUSPENDED:
        return False
    subscriber.status = SubscriberStatus.SUSPENDED
    session.flush()
    audit.record(session, actor, "subscriber.suspend", "subscriber", subscriber.id, via=via)
    return True


def unsuspend(
    session: Session, actor: Actor, subscriber: Subscriber, *, via: str | None = None
) -> bool:
    """Back to confirmed when they ever confirmed, else to pending (double opt-in holds)."""
    if subscriber.status is not SubscriberStatus.SUSPENDED:
        return False
    subscriber.status = (
        SubscriberStatus.CONFIRMED if subscriber.confirmed_at else SubscriberStatus.PENDING
    )
    session.flush()
    status = {"status": subscriber.status.value}
    audit.record(
        session, actor, "subscriber.unsuspend", "subscriber", subscriber.id, status, via=via
    )
    return True


# --- CSV ----------------------------------------------------------------------


def _moment(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def export_csv(session: Session, actor: Actor) -> str:
    """Every subscriber with consent fields; the first interest in import's columns.

    Audited with the row count: an export carries every reader's address out.

    Every cell goes through ``neutralised_cell``: an address, a query or a
    name typed by a stranger at sign-up must not run as a formula in the
    admin's spreadsheet. The import undoes the quote, so an export re-imports.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    subscribers = session.scalars(select(Subscriber).order_by(Subscriber.id))
    interests_by_subscriber = _interests_by_subscriber(session)
    rows = 0
    for subscriber in subscribers:
        interests = interests_by_subscriber.get(subscriber.id, [])
        first = interests[0] if interests else None
        cells: list[str | int] = [
            subscriber.email,
            (first.query or "") if first else "",
            REGION_SEPARATOR.join(first.regions) if first else "",
            subscriber.frequency.value,
            subscriber.timezone,
            "yes" if subscriber.confirmed_at else "no",
            subscriber.id,
            subscriber.name or "",
            subscriber.status.value,
            subscriber.language,
            subscriber.send_at.strftime("%H:%M"),
            "yes" if subscriber.paused else "no",
            subscriber.consent_source or "",
            _moment(subscriber.created_at),
            _moment(subscriber.confirmed_at),
            _moment(subscriber.unsubscribed_at),
            json.dumps(
                [{"query": i.query, "regions": i.regions} for i in interests[1:]],
                ensure_ascii=False,
            )
            if len(interests) > 1
            else "",
        ]
        writer.writerow([neutralised_cell(c) if isinstance(c, str) else c for c in cells])
        rows += 1
    audit.record(session, actor, "subscribers.export", "subscriber", None, {"rows": rows})
    return buffer.getvalue()


def _interests_by_subscriber(session: Session) -> dict[int, list[Interest]]:
    grouped: dict[int, list[Interest]] = {}
    for interest in session.scalars(select(Interest).order_by(Interest.id)):
        grouped.setdefault(interest.subscriber_id, []).append(interest)
    return grouped


# --- suppressions ---------------------------------------------------------------


def list_suppressions(
    session: Session, email: str = "", limit: int = SUPPRESSION_PAGE_SIZE
) -> list[Suppression]:
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if email.strip():
        query = query.where(Suppression.email.contains(email.strip().lower(), autoescape=True))
    return list(session.scalars(query.limit(limit)))


def add_suppression(
    session: Session, actor: Actor, email: str, detail: str, now: datetime
) -> Suppression:
    """Suppress an address by hand (kept as it is when already suppressed), audited."""
    try:
        address = validate_address(email.strip()).lower()
    except InvalidAddressError as error:
        raise SubscriberError(str(error)) from error
    suppress(session, address, SuppressionReason.MANUAL, detail.strip() or "added by hand", now)
    session.flush()
    suppression = session.scalar(select(Suppression).where(Suppression.email == address))
    if suppression is None:  # pragma: no cover - suppress() just stored or found it
        raise SubscriberError(f"could not suppress {address}")
    reason = {"reason": suppression.reason.value}
    audit.record(session, actor, "suppression.add", "suppression", suppression.id, reason, now)
    return suppression


def remove_suppression(session: Session, actor: Actor, suppression: Suppression) -> None:
    """Mail may go to the address again; the log keeps why it had been suppressed."""
    reason = {"reason": suppression.reason.value}
    audit.record(session, actor, "suppression.remove", "suppression", suppression.id, reason)
    session.delete(suppression)
    session.flush()


# --- dashboard ----------------------------------------------------------------


@dataclass
class SourceHealth:
    source: Source
    latest_title: str | None


@dataclass
class FailedDelivery:
    delivery: Delivery
    article_title: str | None


@dataclass
class Dashboard:
    subscribers_by_status: dict[str, int]
    deliveries_today: dict[str, int]
    bounces_today: int
    suppressions_by_reason: dict[str, int]
    queue_depths: dict[str, int]
    # The same counters /metrics serves (every process on this machine).
    figures: dict[str, float] = field(default_factory=dict)
    sources: list[SourceHealth] = field(default_factory=list)
    failed_deliveries: list[FailedDelivery] = field(default_factory=list)
    failing_sources: list[Source] = field(default_factory=list)
    # What the growing tables hold, and the retention period of each.
    storage: list[dict[str, Any]] = field(default_factory=list)
    database_bytes: int | None = None
    returns: list[DayOfReturns] = field(default_factory=list)


def _grouped(session: Session, column: Any, *conditions: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(*conditions).group_by(column))
    return {str(getattr(key, "value", key)): int(count) for key, count in rows}


def _source_health(session: Session) -> list[SourceHealth]:
    sources = list(session.scalars(select(Source).order_by(Source.name)))
    latest_ids = (
        select(func.max(Article.id))
        .where(Article.source_id.is_not(None))
        .group_by(Article.source_id)
    )
    rows = session.execute(
        select(Article.source_id, Article.title).where(Article.id.in_(latest_ids))
    )
    titles: dict[int | None, str] = dict(rows.all())
    return [SourceHealth(source=s, latest_title=titles.get(s.id)) for s in sources]


def dashboard(session: Session, settings: Settings, now: datetime) -> Dashboard:
    """The admin's health page: counts, queue, sources, errors. A handful of queries."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    failed_states: Sequence[DeliveryState] = (DeliveryState.FAILED, DeliveryState.BOUNCED)
    failed = session.execute(
        select(Delivery, Article.title)
        .outerjoin(Article, Article.id == Delivery.article_id)
        .where(Delivery.state.in_(failed_states))
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(RECENT_ERRORS)
    ).all()
    health = _source_health(session)
    return Dashboard(
        subscribers_by_status=_grouped(session, Subscriber.status),
        deliveries_today=_grouped(session, Delivery.state, Delivery.created_at >= midnight),
        bounces_today=int(
            session.scalar(
                select(func.count(Delivery.id)).where(
                    Delivery.state == DeliveryState.BOUNCED, Delivery.updated_at >= midnight
                )
            )
            or 0
        ),
        suppressions_by_reason=_grouped(session, Suppression.reason),
        queue_depths=queue_depths(settings),
        figures=metrics.totals(),
        sources=health,
        failed_deliveries=[FailedDelivery(d, title) for d, title in failed],
        failing_sources=[h.source for h in health if h.source.last_status == SOURCE_ERROR_STATUS],
        storage=[
            {**row, "kept_days": retention_days(settings, row["kind"])}
            for row in storage_sizes(session)
        ],
        database_bytes=database_bytes(session),
        returns=daily_returns(session, now),
    )
