"""Sending promised mail: claim, compose, send, settle.

``send_deliveries`` owns its transactions, unlike the rest of the domain: an
SMTP hand-off cannot be rolled back, so the claim commits before the first
byte goes out and the outcomes commit after, a few messages at a time. A
worker killed in between leaves rows in ``sending``; the sweeper re-queues
them and the resend carries the same Message-ID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.db import Database
from alerts.delivery.dkim import DkimSigner
from alerts.delivery.ledger import claim, defer, settle
from alerts.delivery.message import build_message, make_message_id, split_mailbox
from alerts.delivery.render import MailRenderer, RenderedMail
from alerts.delivery.senders import PermanentFailure, Sender, TemporaryFailure
from alerts.i18n import DEFAULT_LANGUAGE
from alerts.jobs import enqueue_after_commit
from alerts.metrics import DELIVERIES, SMTP_RESPONSES, smtp_class
from alerts.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from alerts.tokens import reader_subject, sign_token
from alerts.webhooks import emit

log = logging.getLogger("alerts.delivery")

# Outcomes are committed every this many messages: fewer commits, and at most
# this many resends (same Message-ID) if the worker is killed.
SETTLE_EVERY = 20
# Permanent refusals at these SMTP stages are about the recipient: they bounce.
RECIPIENT_STAGES = frozenset({"rcpt", "data"})
UNSUBSCRIBE_PURPOSE = "unsubscribe"
PREFERENCES_PURPOSE = "preferences"
CONFIRM_PURPOSE = "confirm"
# The query parameter reader pages take their language from (alerts.web.templating).
LANGUAGE_PARAMETER = "lang"

# Builds (template name, context) per delivery id; a delivery left out has
# nothing to say and is skipped. A context's ``language`` picks the catalogue.
Composer = Callable[
    [Session, Sequence[Delivery], Settings, datetime], dict[int, tuple[str, dict[str, Any]]]
]


def mail_domain(settings: Settings) -> str:
    _, address = split_mailbox(settings.mail_from)
    return address.rpartition("@")[2] or urlsplit(settings.base_url).hostname or "localhost"


def message_id_for(settings: Settings, dedup_key: str) -> str:
    return make_message_id(mail_domain(settings), dedup_key)


def language_query(language: str) -> str:
    """``?lang=xx`` for pages that cannot look the reader up; nothing for English."""
    return "" if language == DEFAULT_LANGUAGE else f"?{LANGUAGE_PARAMETER}={language}"


def subscriber_links(
    settings: Settings,
    subscriber_id: int,
    language: str = DEFAULT_LANGUAGE,
    *,
    version: int,
    issued_at: datetime,
) -> dict[str, str]:
    """Signed links that every mail carries; they identify the reader without a password.

    Each carries the reader's ``token_version`` (bumping it kills every link
    sent so far) and an expiry counted from the day of ``issued_at``. The unsubscribe page shows
    no stored data, so it learns the reader's language from the link; the
    preference centre reads it from the reader.
    """
    secret = settings.resolved_secret_key
    base = settings.base_url.rstrip("/")
    subject = reader_subject(subscriber_id, version)
    # Counted from the start of the UTC day: every mail of one day (a preview
    # and the send, a first try and a retry) carries the very same links.
    issued_at = issued_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    unsubscribe = sign_token(
        secret,
        UNSUBSCRIBE_PURPOSE,
        subject,
        expires_at=issued_at + timedelta(days=settings.unsubscribe_link_valid_days),
    )
    preferences = sign_token(
        secret,
        PREFERENCES_PURPOSE,
        subject,
        expires_at=issued_at + timedelta(days=settings.preference_link_valid_days),
    )
    return {
        "unsubscribe": f"{base}/unsubscribe/{unsubscribe}{language_query(language)}",
        "preferences": f"{base}/preferences/{preferences}",
    }


def link_versions(session: Session, subscriber_ids: Iterable[int | None]) -> dict[int, int]:
    """The ``token_version`` of each reader of a batch, in one query (absent: erased)."""
    ids = {i for i in subscriber_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(Subscriber.id, Subscriber.token_version).where(Subscriber.id.in_(ids))
    )
    return {row.id: row.token_version for row in rows}


def confirm_link(
    settings: Settings, subject: int | str, now: datetime, language: str = DEFAULT_LANGUAGE
) -> str:
    """The double opt-in link; ``subject`` names the reader (and the request, see signup)."""
    expires = now + timedelta(hours=settings.confirmation_valid_hours)
    token = sign_token(settings.resolved_secret_key, CONFIRM_PURPOSE, subject, expires_at=expires)
    return f"{settings.base_url.rstrip('/')}/confirm/{token}{language_query(language)}"


@dataclass
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    skipped: int = 0

    def add(self, other: SendReport) -> None:
        for name in ("sent", "deferred", "failed", "bounced", "suppressed", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Mailer:
    """What a worker keeps between tasks: renderer, sender, signer, composers."""

    settings: Settings
    sender: Sender
    renderer: MailRenderer
    composers: dict[DeliveryKind, Composer]
    signer: DkimSigner | None = None

    def build(self, delivery: Delivery, template: str, context: dict[str, Any]) -> bytes:
        """The message bytes; a retry of the same delivery builds the same bytes."""
        language = context.get("language", DEFAULT_LANGUAGE)
        mail: RenderedMail = self.renderer.render(template, context, language)
        links = context["links"]
        message = build_message(
            sender=self.settings.mail_from,
            to=delivery.recipient,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            message_id=delivery.message_id,
            date=delivery.created_at,
            list_id=f"{delivery.kind.value}.{mail_domain(self.settings)}",
            unsubscribe_url=links["unsubscribe"],
            unsubscribe_mailto=f"unsubscribe@{mail_domain(self.settings)}",
        )
        return self.signer.sign(message) if self.signer else message


def _blocked(session: Session, deliveries: Sequence[Delivery]) -> dict[int, str]:
    """Deliveries that must not go out, with the reason: suppressed or inactive readers."""
    emails = {d.recipient for d in deliveries}
    suppressed = set(
        session.scalars(select(Suppression.email).where(Suppression.email.in_(emails)))
    )
    subscriber_ids = {d.subscriber_id for d in deliveries if d.subscriber_id is not None}
    subscribers = {
        s.id: s
        for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(subscriber_ids)))
    }
    blocked: dict[int, str] = {}
    for delivery in deliveries:
        subscriber = subscribers.get(delivery.subscriber_id or -1)
        if delivery.recipient in suppressed:
            blocked[delivery.id] = "address is on the suppression list"
        elif delivery.kind is DeliveryKind.TEST:
            continue
        elif subscriber is None:
            blocked[delivery.id] = "subscriber no longer exists"
        elif delivery.kind is DeliveryKind.CONFIRMATION:
            # A reader who is subscribed or left may confirm a new sign-up request.
            asking = subscriber.pending_signup is not None and subscriber.status in (
                SubscriberStatus.CONFIRMED,
                SubscriberStatus.UNSUBSCRIBED,
            )
            if subscriber.status is not SubscriberStatus.PENDING and not asking:
                blocked[delivery.id] = f"subscriber is {subscriber.status.value}, not pending"
        elif subscriber.status is not SubscriberStatus.CONFIRMED:
            blocked[delivery.id] = f"subscriber is {subscriber.status.value}"
        elif subscriber.paused and delivery.kind is not DeliveryKind.NEWSLETTER:
            blocked[delivery.id] = "subscriber paused delivery"
    return blocked


def send_deliveries(
    database: Database, delivery_ids: Sequence[int], mailer: Mailer, clock: Callable[[], datetime]
) -> SendReport:
    """Send the due, queued deliveries among ``delivery_ids``; see the module docstring."""
    report = SendReport()
    with database.session_scope() as session:
        claimed = claim(session, delivery_ids, clock())
    if not claimed:
        return report

    with database.session_scope() as session:
        now = clock()
        blocked = _blocked(session, claimed)
        for reason in set(blocked.values()):
            ids = [i for i, why in blocked.items() if why == reason]
            settle(session, ids, DeliveryState.SUPPRESSED, now, reason)
        report.suppressed = len(blocked)
        for delivery in claimed:
            if delivery.id in blocked:
                _count_and_log(delivery, DeliveryState.SUPPRESSED.value, blocked[delivery.id])
        open_ = [d for d in claimed if d.id not in blocked]
        composed: dict[int, tuple[str, dict[str, Any]]] = {}
        for kind in {d.kind for d in open_}:
            batch = [d for d in open_ if d.kind is kind]
            composed.update(mailer.composers[kind](session, batch, mailer.settings, now))
        empty = [d.id for d in open_ if d.id not in composed]
        settle(session, empty, DeliveryState.SKIPPED, now, "nothing to send")
        report.skipped = len(empty)
        for delivery in open_:
            if delivery.id not in composed:
                _count_and_log(delivery, DeliveryState.SKIPPED.value)

    outcomes: list[tuple[Delivery, DeliveryState | Exception]] = []
    for delivery in (d for d in open_ if d.id in composed):
        template, context = composed[delivery.id]
        message = mailer.build(delivery, template, context)
        try:
            mailer.sender.send(_envelope_from(mailer.settings), delivery.recipient, message)
        except (TemporaryFailure, PermanentFailure) as failure:
            SMTP_RESPONSES.labels(smtp_class(failure.code)).inc()
            outcomes.append((delivery, failure))
        else:
            SMTP_RESPONSES.labels("2xx").inc()
            outcomes.append((delivery, DeliveryState.SENT))
        if len(outcomes) >= SETTLE_EVERY:
            _record(database, outcomes, clock(), report)
            outcomes = []
    _record(database, outcomes, clock(), report)
    return report


def _envelope_from(settings: Settings) -> str:
    return split_mailbox(settings.mail_from)[1]


def _record(
    database: Database,
    outcomes: Sequence[tuple[Delivery, DeliveryState | Exception]],
    now: datetime,
    report: SendReport,
) -> None:
    """Settle a group of sent (or refused) deliveries in one transaction."""
    if not outcomes:
        return
    with database.session_scope() as session:
        sent = [d.id for d, outcome in outcomes if outcome is DeliveryState.SENT]
        settle(session, sent, DeliveryState.SENT, now)
        for delivery, outcome in outcomes:
            state = _settle_failure(session, delivery, outcome, now, report)
            _count_and_log(delivery, state, outcome)
    report.sent += len(sent)


def _settle_failure(
    session: Session,
    delivery: Delivery,
    outcome: DeliveryState | Exception,
    now: datetime,
    report: SendReport,
) -> str:
    """Record a refusal; returns the state name the delivery ends in."""
    if isinstance(outcome, TemporaryFailure):
        due = defer(session, delivery, now, f"{outcome.code} {outcome.reason}")
        if due is None:
            report.failed += 1
            return DeliveryState.FAILED.value
        report.deferred += 1
        return "deferred"
    if isinstance(outcome, PermanentFailure) and outcome.stage in RECIPIENT_STAGES:
        bounce(session, delivery, now, f"{outcome.code} {outcome.reason}")
        report.bounced += 1
        return DeliveryState.BOUNCED.value
    if isinstance(outcome, PermanentFailure):
        # Refused for reasons that say nothing about the reader (our sender
        # address, a malformed envelope): failed, never retried, not suppressed.
        reason = f"{outcome.stage}: {outcome.code} {outcome.reason}"
        settle(session, [delivery.id], DeliveryState.FAILED, now, reason)
        report.failed += 1
        return DeliveryState.FAILED.value
    return DeliveryState.SENT.value


def _count_and_log(delivery: Delivery, state: str, outcome: object = None) -> None:
    """One metric tick and one log line per delivery outcome (ids, never the address)."""
    DELIVERIES.labels(delivery.kind.value, state).inc()
    log.info(
        "delivery %s %s%s",
        delivery.id,
        state,
        "" if outcome is None or outcome is DeliveryState.SENT else f": {outcome}",
        extra={
            "delivery_id": delivery.id,
            "subscriber_id": delivery.subscriber_id,
            "article_id": delivery.article_id,
            "newsletter_id": delivery.newsletter_id,
            "kind": delivery.kind.value,
            "outcome": state,
            "smtp_code": getattr(outcome, "code", None),
        },
    )


def bounce(session: Session, delivery: Delivery, now: datetime, reason: str) -> None:
    """A permanent refusal: never retried; the address goes on the suppression list."""
    settle(session, [delivery.id], DeliveryState.BOUNCED, now, reason)
    suppress(session, delivery.recipient, SuppressionReason.HARD_BOUNCE, reason, now)
    emit(
        session,
        "delivery.bounced",
        {"delivery_id": delivery.id, "subscriber_id": delivery.subscriber_id, "reason": reason},
        now,
    )
    if delivery.subscriber_id is not None:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == delivery.subscriber_id)
            .values(status=SubscriberStatus.BOUNCED)
        )


def suppress(
    session: Session, email: str, reason: SuppressionReason, detail: str, now: datetime
) -> None:
    """Put an address on the suppression list (once; a concurrent add wins)."""
    if session.scalar(select(Suppression.id).where(Suppression.email == email)) is not None:
        return
    try:
        with session.begin_nested():
            session.add(Suppression(email=email, reason=reason, detail=detail, created_at=now))
    except IntegrityError:
        log.info("suppression of a bounced address was recorded by another worker")


SEND_JOB = "send_deliveries"
# Same work on its own queue, so an alert never waits behind a digest run.
URGENT_SEND_JOB = "send_alerts"
URGENT_KINDS = (DeliveryKind.ALERT, DeliveryKind.CONFIRMATION, DeliveryKind.TEST)
# A send task carries at least this many recipients when there are that many.
MIN_SEND_BATCH = 100


def queue_sending(
    session: Session, delivery_ids: Sequence[int], settings: Settings, *, urgent: bool = False
) -> None:
    """Queue send tasks for ``delivery_ids`` after commit, in batches of recipients.

    ``urgent`` mail (alerts, confirmations) goes to the alerts queue.
    """
    size = max(settings.send_batch_size, MIN_SEND_BATCH)
    job = URGENT_SEND_JOB if urgent else SEND_JOB
    ids = sorted(delivery_ids)
    for start in range(0, len(ids), size):
        enqueue_after_commit(session, job, delivery_ids=ids[start : start + size])


def queue_sending_by_kind(
    session: Session, delivery_ids: Sequence[int], settings: Settings
) -> None:
    """Queue a mix of kinds (the sweeper's finds), each on the queue of its kind."""
    if not delivery_ids:
        return
    urgent = set(
        session.scalars(
            select(Delivery.id).where(
                Delivery.id.in_(delivery_ids), Delivery.kind.in_(URGENT_KINDS)
            )
        )
    )
    queue_sending(session, [i for i in delivery_ids if i in urgent], settings, urgent=True)
    queue_sending(session, [i for i in delivery_ids if i not in urgent], settings)
