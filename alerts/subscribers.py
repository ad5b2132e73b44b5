"""Subscribers and their interests: adding, importing, listing.

Every entry point validates the same way: the address, the time zone, the
send time, and each interest through the query parser and the gazetteer, so
a bad row is refused with a reason before anything is stored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.matching import (
    Gazetteer,
    QueryError,
    RegionNotFoundError,
    load_gazetteer,
    prepare_interest,
)
from alerts.matching import Interest as InterestSpec
from alerts.models import Frequency, Interest, Subscriber, SubscriberStatus
from alerts.schedule import UnknownTimezoneError, zone
from alerts.webhooks import emit

DEFAULT_SEND_AT = time(7, 0)
CSV_COLUMNS = ("email", "query", "regions", "frequency", "timezone", "confirmed")
REGION_SEPARATOR = ";"
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "confirmed"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n"})


class SubscriberError(ValueError):
    """Input that cannot become a subscriber; the message says why."""


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    return load_gazetteer()


@dataclass
class NewSubscriber:
    email: str
    query: str | None = None
    regions: list[str] = field(default_factory=list)
    frequency: str = Frequency.DAILY.value
    timezone: str = "UTC"
    send_at: str | time = DEFAULT_SEND_AT
    confirmed: bool = False
    language: str = "en"
    consent_source: str | None = None


def parse_send_at(value: str | time) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value.strip())
    except ValueError as error:
        raise SubscriberError(f"send time {value!r} is not HH:MM") from error


def validated_interest(
    query: str | None, regions: Iterable[str], settings: Settings
) -> tuple[str | None, list[str]]:
    """The query as typed and the regions as gazetteer ids, or SubscriberError."""
    query = (query or "").strip() or None
    names = [name.strip() for name in regions if name.strip()]
    try:
        prepared = prepare_interest(
            InterestSpec(id="new", query=query, regions=tuple(names)),
            gazetteer(),
            max_length=settings.query_max_length,
            max_terms=settings.query_max_terms,
        )
    except RegionNotFoundError as error:
        raise SubscriberError(f"unknown region {error.region!r}{error.hint}") from error
    except QueryError as error:
        raise SubscriberError(f"query: {error}") from error
    return query, sorted(prepared.region_ids)


def add_subscriber(
    session: Session, data: NewSubscriber, settings: Settings, now: datetime
) -> Subscriber:
    """Store a subscriber with one interest (when a query or region is given); flush only."""
    try:
        email = validate_address(data.email.strip()).lower()
    except InvalidAddressError as error:
        raise SubscriberError(str(error)) from error
    try:
        frequency = Frequency(data.frequency.strip().lower())
    except ValueError as error:
        choices = ", ".join(f.value for f in Frequency)
        raise SubscriberError(f"frequency {data.frequency!r} is not one of {choices}") from error
    try:
        zone(data.timezone.strip())
    except UnknownTimezoneError as error:
        raise SubscriberError(str(error)) from error
    send_at = parse_send_at(data.send_at)
    query, region_ids = validated_interest(data.query, data.regions, settings)
    if session.scalar(select(Subscriber.id).where(Subscriber.email == email)) is not None:
        raise SubscriberError(f"{email} is already subscribed")
    subscriber = Subscriber(
        email=email,
        frequency=frequency,
        timezone=data.timezone.strip(),
        send_at=send_at,
        language=data.language,
        consent_source=data.consent_source,
        created_at=now,
        status=SubscriberStatus.CONFIRMED if data.confirmed else SubscriberStatus.PENDING,
        confirmed_at=now if data.confirmed else None,
        # The first digest covers what matched after joining, nothing older.
        last_digest_at=now,
    )
    if query or region_ids:
        subscriber.interests.append(
            Interest(query=query, regions=region_ids, created_at=now, updated_at=now)
        )
    session.add(subscriber)
    session.flush()
    return subscriber


@dataclass
class ImportReport:
    added: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def import_csv(
    session: Session,
    text: str,
    settings: Settings,
    now: datetime,
    on_row: Callable[[], None] | None = None,
) -> ImportReport:
    """Add every good row; report each bad one by its line number. Flush only.

    Columns: email, query, regions (separated by ';'), frequency, timezone,
    confirmed. Only email is required; a row that fails is skipped whole.
    """
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "email" not in header:
        report.errors.append((1, f"no 'email' column (columns: {', '.join(CSV_COLUMNS)})"))
        return report
    reader.fieldnames = header
    for row in reader:
        line = reader.line_num
        try:
            with session.begin_nested():
                add_subscriber(session, _row_to_subscriber(row), settings, now)
        except SubscriberError as error:
            report.errors.append((line, str(error)))
        else:
            report.added += 1
        if on_row:
            on_row()
    return report


def _row_to_subscriber(row: dict[str, str | None]) -> NewSubscriber:
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    confirmed = cell("confirmed").lower()
    if confirmed not in TRUE_WORDS | FALSE_WORDS:
        raise SubscriberError(f"confirmed {confirmed!r} is not yes or no")
    return NewSubscriber(
        email=cell("email"),
        query=cell("query") or None,
        regions=cell("regions").split(REGION_SEPARATOR) if cell("regions") else [],
        frequency=cell("frequency") or Frequency.DAILY.value,
        timezone=cell("timezone") or "UTC",
        confirmed=confirmed in TRUE_WORDS,
        consent_source="csv import",
    )


def unsubscribe(session: Session, subscriber_id: int, now: datetime) -> Subscriber | None:
    """Stop all mail to a subscriber at once; flush only. None when unknown."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now
        emit(session, "subscriber.unsubscribed", {"subscriber_id": subscriber_id}, now)
    return subscriber
