"""Subscribers and their interests: adding, importing, listing.

Every entry point validates the same way: the address, the time zone, the
send time, and each interest through :func:`validated_interest` (the query
parser with every configured limit, and the gazetteer), so a bad row is
refused with a reason before anything is stored. Sign-up, the preference
centre, the API, the CSV import and the command line all store interests
through that one function.

A CSV import commits every ``import_batch_rows`` rows
(:func:`import_csv_in_batches`): on SQLite one long transaction would hold
the database's only write lock for the whole file and starve the clock and
the workers.
"""

from __future__ import annotations

import csv
import io
import itertools
import time as time_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import audit
from alerts.audit import Actor
from alerts.config import Settings
from alerts.db import Database
from alerts.delivery.ledger import Promise, promise
from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.delivery.queueing import message_id_for, queue_sending
from alerts.errors import AlertsError, ConflictError, InvalidInputError
from alerts.i18n import LANGUAGES
from alerts.matching import Interest as InterestSpec
from alerts.matching import (
    QueryError,
    UnknownRegionError,
    prepare_interest,
)
from alerts.matching.service import reached_matches
from alerts.models import (
    Delivery,
    DeliveryKind,
    Frequency,
    Interest,
    Subscriber,
    SubscriberStatus,
)
from alerts.regions import default_gazetteer
from alerts.schedule import UnknownTimezoneError, zone
from alerts.webhooks import emit

DEFAULT_SEND_AT = time(7, 0)
CSV_COLUMNS = ("email", "query", "regions", "frequency", "timezone", "confirmed")
REGION_SEPARATOR = ";"
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "confirmed"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n"})
# Spreadsheets run a cell that starts with one of these as a formula (OWASP's
# list for CSV injection); an export prefixes such a cell with a single quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_QUOTE = "'"
# A pending reader who signs up again gets the confirmation again, but not
# more often than this, so the form cannot be used to flood a mailbox.
CONFIRMATION_RESEND_AFTER = timedelta(hours=1)
IMPORT_ACTOR = "import"
# Seconds an import leaves SQLite's write lock free between two batches.
SQLITE_PAUSE_BETWEEN_BATCHES = 0.25


class SubscriberError(InvalidInputError):
    """Input that cannot become a subscriber; the message says why."""


class AlreadySubscribedError(SubscriberError, ConflictError):
    """The address belongs to a subscriber already (an API answers 409)."""


class InterestError(SubscriberError):
    """An interest refused by :func:`validated_interest`.

    ``message`` is the reason alone and ``position`` the character of the query
    it points at (None for a region), for forms that mark the spot.
    """

    def __init__(self, text: str, message: str, position: int | None = None) -> None:
        super().__init__(text)
        self.message = message
        self.position = position


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


# --- a reader's delivery choices: one parser each, used by every edge -----------


def parse_language(value: str) -> str:
    """A language the mail and pages are translated into; any other is refused.

    The strict rule for every edge: a reader stored with a language we cannot
    speak would get English mail under a label that promised otherwise.
    """
    language = value.strip().lower()
    if language not in LANGUAGES:
        raise SubscriberError(f"language {value!r} is not one of {', '.join(LANGUAGES)}")
    return language


def parse_frequency(value: str | Frequency) -> Frequency:
    if isinstance(value, Frequency):
        return value
    try:
        return Frequency(value.strip().lower())
    except ValueError as error:
        choices = ", ".join(f.value for f in Frequency)
        raise SubscriberError(f"frequency {value!r} is not one of {choices}") from error


def parse_timezone(value: str) -> str:
    """An IANA zone name the scheduler can compute local send times in."""
    name = value.strip()
    try:
        zone(name)
    except UnknownTimezoneError as error:
        raise SubscriberError(str(error)) from error
    return name


def parse_send_at(value: str | time) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value.strip())
    except ValueError as error:
        raise SubscriberError(f"send time {value!r} is not HH:MM") from error


def normalised_address(email: str) -> str:
    """The address as stored: checked, lower case."""
    try:
        return validate_address(email.strip()).lower()
    except InvalidAddressError as error:
        raise SubscriberError(str(error)) from error


def validated_interest(
    query: str | None, regions: Iterable[str], settings: Settings
) -> tuple[str | None, list[str]]:
    """The query as typed and the regions as gazetteer ids, or InterestError.

    The one check every stored interest passes: the matching workers parse a
    stored query with the same limits, so what this accepts they can file.
    """
    query = (query or "").strip() or None
    names = [name.strip() for name in regions if name.strip()]
    try:
        prepared = prepare_interest(
            InterestSpec(id="new", query=query, regions=tuple(names)),
            default_gazetteer(),
            max_length=settings.query_max_length,
            max_terms=settings.query_max_terms,
            max_depth=settings.query_max_depth,
        )
    except UnknownRegionError as error:
        message = f"unknown region {error.name!r}{error.hint}"
        raise InterestError(message, message) from error
    except QueryError as error:
        raise InterestError(f"query: {error}", error.message, error.position) from error
    return query, sorted(prepared.region_ids)


def add_subscriber(
    session: Session, data: NewSubscriber, settings: Settings, now: datetime
) -> Subscriber:
    """Store a subscriber with one interest (when a query or region is given); flush only."""
    email = normalised_address(data.email)
    # Before the other checks: an address already stored is a conflict whatever else is sent.
    if session.scalar(select(Subscriber.id).where(Subscriber.email == email)) is not None:
        raise AlreadySubscribedError(f"{email} is already subscribed")
    frequency = parse_frequency(data.frequency)
    timezone = parse_timezone(data.timezone)
    send_at = parse_send_at(data.send_at)
    language = parse_language(data.language)
    query, region_ids = validated_interest(data.query, data.regions, settings)
    subscriber = Subscriber(
        email=email,
        frequency=frequency,
        timezone=timezone,
        send_at=send_at,
        language=language,
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


def confirmation_key(subscriber_id: int, sequence: int) -> str:
    base = f"confirmation.{subscriber_id}"
    return base if sequence == 0 else f"{base}.{sequence}"


def promise_confirmation(
    session: Session, subscriber: Subscriber, settings: Settings, now: datetime
) -> list[int]:
    """Promise one confirmation mail, unless one was promised within the last hour.

    The n-th confirmation of a reader has its own dedup key, so two racing
    sign-ups for one address still promise a single mail.
    """
    earlier = session.execute(
        select(func.count(Delivery.id), func.max(Delivery.created_at)).where(
            Delivery.subscriber_id == subscriber.id, Delivery.kind == DeliveryKind.CONFIRMATION
        )
    ).one()
    count, latest = earlier
    if latest is not None and latest > now - CONFIRMATION_RESEND_AFTER:
        return []
    key = confirmation_key(subscriber.id, count or 0)
    return promise(
        session,
        [
            Promise(
                dedup_key=key,
                kind=DeliveryKind.CONFIRMATION,
                recipient=subscriber.email,
                message_id=message_id_for(settings, key),
                due_at=now,
                subscriber_id=subscriber.id,
            )
        ],
        now,
    )


def create_subscriber(
    session: Session,
    actor: Actor,
    data: NewSubscriber,
    settings: Settings,
    now: datetime,
    *,
    ask_to_confirm: bool = True,
    via: str | None = None,
) -> Subscriber:
    """Add a subscriber on someone's behalf and audit it; flush only.

    ``data.confirmed`` says consent was given elsewhere. A reader who is not
    confirmed gets the double opt-in mail (queued after commit) unless
    ``ask_to_confirm`` is off: a CSV import of pending rows mails nobody.
    The address is in the log only as the subscriber's id.
    """
    subscriber = add_subscriber(session, data, settings, now)
    if subscriber.status is SubscriberStatus.PENDING and ask_to_confirm:
        # Double opt-in: the confirmation mail is all a pending reader gets.
        queue_sending(
            session, promise_confirmation(session, subscriber, settings, now), settings, urgent=True
        )
    audit.record(
        session,
        actor,
        "subscriber.add",
        "subscriber",
        subscriber.id,
        {"status": subscriber.status.value},
        now,
        via=via,
    )
    return subscriber


def erase(
    session: Session, actor: Actor, subscriber_id: int, now: datetime, *, via: str | None = None
) -> bool:
    """Delete a reader and, by cascade, their interests, matches and deliveries.

    The one erasure, whoever asks (the reader's own link, an admin, the API,
    the command line). The audit entry records that it happened and how much
    it removed, never the address: keeping it would defeat the erasure.
    False when there is no such subscriber.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    counts = {
        "interests": len(subscriber.interests),
        "deliveries": session.scalar(
            select(func.count(Delivery.id)).where(Delivery.subscriber_id == subscriber_id)
        ),
        # What the reader could see; the rows are shared, and go with the prune
        # once nobody else follows the same interest.
        "matches": session.scalar(
            select(func.count()).select_from(reached_matches([subscriber_id]).subquery())
        ),
    }
    audit.record(
        session,
        actor,
        "subscriber.erase",
        "subscriber",
        subscriber_id,
        {"removed": counts},
        now,
        via=via,
    )
    session.expunge(subscriber)
    # The database cascades (ON DELETE CASCADE) remove the dependent rows.
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber_id))
    session.flush()
    return True


def find_subscriber(session: Session, id_or_email: str) -> Subscriber | None:
    """The subscriber an admin names by id or by address (checked like any address).

    SubscriberError for something that is neither; None when nobody has it.
    """
    text = id_or_email.strip()
    if text.isdigit():
        return session.get(Subscriber, int(text))
    email = normalised_address(text)
    return session.scalar(select(Subscriber).where(Subscriber.email == email))


# --- interests ----------------------------------------------------------------------


def check_interest_cap(subscriber: Subscriber, settings: Settings) -> None:
    """SubscriberError when the reader already holds the most interests allowed."""
    if len(subscriber.interests) >= settings.max_interests_per_reader:
        raise SubscriberError(
            f"you already have {len(subscriber.interests)} interests, the most allowed; "
            "remove one before adding another"
        )


def add_interest(
    session: Session,
    actor: Actor,
    subscriber: Subscriber,
    query: str | None,
    regions: Iterable[str],
    settings: Settings,
    now: datetime,
    *,
    via: str | None = None,
) -> Interest:
    """A new interest for a reader: validated, within the cap, audited; flush only."""
    clean_query, region_ids = validated_interest(query, regions, settings)
    check_interest_cap(subscriber, settings)
    interest = Interest(query=clean_query, regions=region_ids, created_at=now, updated_at=now)
    subscriber.interests.append(interest)
    session.flush()
    audit.record(
        session,
        actor,
        "interest.add",
        "interest",
        interest.id,
        {"subscriber_id": subscriber.id},
        now,
        via=via,
    )
    return interest


def edit_interest(
    session: Session,
    actor: Actor,
    interest: Interest,
    query: str | None,
    regions: Iterable[str],
    settings: Settings,
    now: datetime,
    *,
    via: str | None = None,
) -> Interest:
    """Replace an interest's query and regions (validated first), audited; flush only."""
    clean_query, region_ids = validated_interest(query, regions, settings)
    interest.query = clean_query
    interest.regions = region_ids
    # The workers re-file interests whose updated_at moved past their last refresh.
    interest.updated_at = now
    session.flush()
    audit.record(
        session,
        actor,
        "interest.edit",
        "interest",
        interest.id,
        {"subscriber_id": interest.subscriber_id},
        now,
        via=via,
    )
    return interest


def delete_interest(
    session: Session, actor: Actor, interest: Interest, *, via: str | None = None
) -> None:
    """Remove one interest of a reader, audited by ids; flush only."""
    interest_id, subscriber_id = interest.id, interest.subscriber_id
    session.delete(interest)
    session.flush()
    audit.record(
        session,
        actor,
        "interest.delete",
        "interest",
        interest_id,
        {"subscriber_id": subscriber_id},
        via=via,
    )


@dataclass
class ImportReport:
    added: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    batches: int = 0  # transactions committed (by import_csv_in_batches)
    last_line: int = 0  # the last line read and committed

    def merge(self, batch: ImportReport) -> None:
        """Take in a batch's figures once its transaction is committed."""
        self.added += batch.added
        self.errors.extend(batch.errors)
        self.batches += 1
        self.last_line = batch.last_line


class ImportStoppedError(AlertsError):
    """An import that failed part-way; ``report`` holds what was committed.

    The batch that failed is rolled back whole; every batch before it stays.
    """

    def __init__(self, report: ImportReport, line: int, reason: str) -> None:
        self.report = report
        self.line = line
        super().__init__(
            f"the import stopped in the rows from line {line} ({reason}); "
            f"{report.added} subscribers from the lines before it are stored"
        )


Row = tuple[int, dict[str, str | None]]  # (line number, cells by column)


def _csv_rows(text: str, report: ImportReport) -> Iterator[Row] | None:
    """The data rows with their line numbers; None (and the reason reported)
    when the header lacks an email column."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "email" not in header:
        report.errors.append((1, f"no 'email' column (columns: {', '.join(CSV_COLUMNS)})"))
        return None
    reader.fieldnames = header
    return ((reader.line_num, row) for row in reader)


def _add_rows(
    session: Session,
    rows: Iterable[Row],
    settings: Settings,
    now: datetime,
    report: ImportReport,
    on_row: Callable[[], None] | None,
    actor: Actor,
) -> None:
    """Add each row in its own savepoint, so a bad row costs only itself.

    The savepoints nest inside the batch's transaction on SQLite too: the engine
    begins it (IMMEDIATE) itself, see ``alerts.db``.
    """
    for line, row in rows:
        try:
            with session.begin_nested():
                create_subscriber(
                    session,
                    actor,
                    _row_to_subscriber(row),
                    settings,
                    now,
                    ask_to_confirm=False,
                    via="import",
                )
        except SubscriberError as error:
            report.errors.append((line, str(error)))
        except IntegrityError:
            if not _stored_since(session, row):
                raise  # not a row's fault: the batch fails and says so
            # a sign-up stored the same address between the check and the insert
            report.errors.append((line, "the address is already subscribed"))
        else:
            report.added += 1
        report.last_line = line
        if on_row:
            on_row()


def _stored_since(session: Session, row: dict[str, str | None]) -> bool:
    email = restored_cell((row.get("email") or "").strip()).strip().lower()
    return session.scalar(select(Subscriber.id).where(Subscriber.email == email)) is not None


def import_csv(
    session: Session,
    text: str,
    settings: Settings,
    now: datetime,
    on_row: Callable[[], None] | None = None,
    actor: Actor = IMPORT_ACTOR,
) -> ImportReport:
    """Add every good row; report each bad one by its line number. Flush only.

    Columns: email, query, regions (separated by ';'), frequency, timezone,
    confirmed. Only email is required; a row that fails is skipped whole.
    Each row added is audited under ``actor`` (who ran the import).
    All rows share the caller's transaction: for files of any size use
    :func:`import_csv_in_batches`.
    """
    report = ImportReport()
    rows = _csv_rows(text, report)
    if rows is not None:
        _add_rows(session, rows, settings, now, report, on_row, actor)
    return report


def import_csv_in_batches(
    database: Database,
    text: str,
    settings: Settings,
    now: datetime,
    *,
    on_row: Callable[[], None] | None = None,
    on_batch: Callable[[ImportReport], None] | None = None,
    actor: Actor = IMPORT_ACTOR,
) -> ImportReport:
    """:func:`import_csv`, committing every ``settings.import_batch_rows`` rows.

    Like the send loop, it owns its transactions (one per batch) because it is
    handed the database: between two batches the write lock is free, so the
    clock, the workers and sign-ups carry on during a long import. Bad rows are
    reported by line and good rows kept, as in one transaction. ``on_batch``
    gets the running report after each commit (progress for the caller).
    Raises :class:`ImportStoppedError` when a batch fails for another reason
    than a bad row; the batches before it stay committed. Either way the
    import's outcome is audited in a transaction of its own.
    """
    report = ImportReport()
    rows = _csv_rows(text, report)
    if rows is None:
        _audit_import(database, actor, report)
        return report
    while batch_rows := list(itertools.islice(rows, settings.import_batch_rows)):
        if report.batches and database.engine.dialect.name == "sqlite":
            # SQLite hands its lock to no one: a waiting writer polls (every
            # 100 ms at most), and the next batch would take the lock back
            # before it looked. A pause longer than that lets it in.
            time_module.sleep(SQLITE_PAUSE_BETWEEN_BATCHES)
        batch = ImportReport()
        try:
            with database.session_scope() as session:
                _add_rows(session, batch_rows, settings, now, batch, on_row, actor)
        except Exception as error:
            # Re-raised with what is stored: the caller must tell the admin
            # which lines to import again.
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            _audit_import(database, actor, report)
            raise ImportStoppedError(report, batch_rows[0][0], reason) from error
        report.merge(batch)
        if on_batch:
            on_batch(report)
    _audit_import(database, actor, report)
    return report


def _audit_import(database: Database, actor: Actor, report: ImportReport) -> None:
    outcome = {"added": report.added, "rejected": len(report.errors), "batches": report.batches}
    with database.session_scope() as session:
        audit.record(session, actor, "subscribers.import", "subscriber", None, outcome)


def neutralised_cell(value: str | None) -> str:
    """Free text made safe for spreadsheets: a leading quote disarms a formula."""
    text = value or ""
    return FORMULA_QUOTE + text if text.startswith(FORMULA_PREFIXES) else text


def restored_cell(value: str) -> str:
    """The text :func:`neutralised_cell` was given: an export imports as it was."""
    if value.startswith(FORMULA_QUOTE) and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def _row_to_subscriber(row: dict[str, str | None]) -> NewSubscriber:
    def cell(name: str) -> str:
        return restored_cell((row.get(name) or "").strip()).strip()

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
        # Every link sent so far stops working (the used one answers kindly).
        subscriber.token_version += 1
        emit(session, "subscriber.unsubscribed", {"subscriber_id": subscriber_id}, now)
    return subscriber
