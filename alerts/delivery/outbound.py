"""Sending promised mail: compose, then for each message claim, send, settle.

``send_deliveries`` owns its transactions, unlike the rest of the domain: an
SMTP hand-off cannot be rolled back, so each row is claimed (``sending``) in a
commit just before its message goes out and settled in a commit just after the
server's reply, the way a mail queue does it. Only the message between those
two commits can be sent twice: a worker killed (or a database lost) mid-send
re-sends at most one message per SMTP connection in flight
(``send_claim_size`` rows with a larger claim, of which only one was handed
over). The sweeper re-queues such rows and the resend carries the same
Message-ID, so receivers can drop the copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from alerts.bounces import bounce
from alerts.config import Settings
from alerts.db import Database, utcnow
from alerts.delivery.dkim import DkimSigner
from alerts.delivery.ledger import (
    claim_for_sending,
    close_unsent,
    defer,
    pending,
    record_sent_and_claim,
    settle,
)
from alerts.delivery.message import build_message, split_mailbox
from alerts.delivery.render import MailRenderer, RenderedMail, postal_address
from alerts.delivery.senders import PermanentFailure, Sender, TemporaryFailure
from alerts.delivery.verp import UNSUBSCRIBE_LOCAL, verp_address
from alerts.i18n import DEFAULT_LANGUAGE
from alerts.links import mail_domain
from alerts.metrics import DELIVERIES, SMTP_RESPONSES, smtp_class
from alerts.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    Suppression,
)

log = logging.getLogger("alerts.delivery")

# What a crash may re-send, per SMTP connection in flight: the one message
# handed over whose reply was not yet recorded.
RESENT_AT_MOST_PER_CONNECTION = 1
# Permanent refusals at these SMTP stages are about the recipient: they bounce.
RECIPIENT_STAGES = frozenset({"rcpt", "data"})
# Builds (template name, context) per delivery id; a delivery left out has
# nothing to say and is skipped. A context's ``language`` picks the catalogue.
Composer = Callable[
    [Session, Sequence[Delivery], Settings, datetime], dict[int, tuple[str, dict[str, Any]]]
]


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
        context = {"postal_address": postal_address(self.settings), **context}
        mail: RenderedMail = self.renderer.render(template, context, language)
        links = context["links"]
        kind = delivery.kind
        message = build_message(
            sender=self.settings.mail_from,
            to=delivery.recipient,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            message_id=delivery.message_id,
            # When it leaves, not when it was promised: an alert held through quiet
            # hours must not arrive dated hours ago. The Message-ID stays the same.
            date=utcnow(),
            list_id=f"{kind.value}.{mail_domain(self.settings)}",
            unsubscribe_url=links["unsubscribe"],
            unsubscribe_mailto=unsubscribe_address(self.settings, delivery),
            automatic=kind in AUTOMATIC_KINDS,
            bulk=kind in BULK_KINDS,
            feedback_id=feedback_id(delivery),
        )
        return self.signer.sign(message) if self.signer else message

    def close(self) -> None:
        """Release the sender's connections."""
        self.sender.close()


# Mail no person wrote (RFC 3834 Auto-Submitted); editors' issues are written by people.
AUTOMATIC_KINDS = frozenset({DeliveryKind.ALERT, DeliveryKind.DIGEST, DeliveryKind.CONFIRMATION})
BULK_KINDS = frozenset({DeliveryKind.DIGEST, DeliveryKind.NEWSLETTER})


def feedback_id(delivery: Delivery) -> str:
    """Gmail's Feedback-ID, ``campaign:kind:sender``: its complaint figures come per campaign."""
    campaign = f"n{delivery.newsletter_id}" if delivery.newsletter_id else delivery.kind.value
    return f"{campaign}:{delivery.kind.value}:alerts"


def envelope_from(settings: Settings, delivery: Delivery) -> str:
    """The return path: the delivery's own VERP address once a bounce domain is set.

    No Return-Path header is written: the receiving MTA adds it from this
    envelope sender (RFC 5321 section 4.4), and relays that keep it do so too.
    """
    if settings.bounce_domain:
        return verp_address(
            settings.bounce_local_part,
            settings.bounce_domain,
            delivery.id,
            settings.resolved_secret_key,
        )
    return split_mailbox(settings.mail_from)[1]


def unsubscribe_address(settings: Settings, delivery: Delivery) -> str:
    """The ``mailto:`` of List-Unsubscribe: per delivery, so the request names its reader."""
    if settings.bounce_domain:
        return verp_address(
            UNSUBSCRIBE_LOCAL, settings.bounce_domain, delivery.id, settings.resolved_secret_key
        )
    return f"{UNSUBSCRIBE_LOCAL}@{mail_domain(settings)}"


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


Outcome = DeliveryState | Exception


def send_deliveries(
    database: Database,
    delivery_ids: Sequence[int],
    mailer: Mailer,
    clock: Callable[[], datetime],
    *,
    stop: Callable[[], bool] | None = None,
) -> SendReport:
    """Send the due, queued deliveries among ``delivery_ids``; see the module docstring.

    ``stop`` is asked before each claim; once it says yes, the rest stays queued
    (an interrupted ``alerts digests send`` leaves nothing in ``sending``).
    """
    report = SendReport()
    with database.session_scope() as session:
        now = clock()
        candidates = pending(session, delivery_ids, now)
        if not candidates:
            return report
        blocked = _blocked(session, candidates)
        for reason in set(blocked.values()):
            ids = [i for i, why in blocked.items() if why == reason]
            closed = set(close_unsent(session, ids, DeliveryState.SUPPRESSED, now, reason))
            report.suppressed += len(closed)
            for delivery in candidates:
                if delivery.id in closed:
                    _count_and_log(delivery, DeliveryState.SUPPRESSED.value, reason)
        open_ = [d for d in candidates if d.id not in blocked]
        composed: dict[int, tuple[str, dict[str, Any]]] = {}
        for kind in {d.kind for d in open_}:
            batch = [d for d in open_ if d.kind is kind]
            composed.update(mailer.composers[kind](session, batch, mailer.settings, now))
        empty = [d.id for d in open_ if d.id not in composed]
        closed = set(close_unsent(session, empty, DeliveryState.SKIPPED, now, "nothing to send"))
        report.skipped = len(closed)
        for delivery in open_:
            if delivery.id in closed:
                _count_and_log(delivery, DeliveryState.SKIPPED.value)

    sendable = [d for d in open_ if d.id in composed]
    extra = _take_extra_streams(mailer.settings, len(sendable) - 1)
    if not extra:
        _send_stream(database, sendable, composed, mailer, clock, stop, report)
        return report
    # More streams while SMTP connections are idle: each waits on its own ledger
    # writes, so the others keep the connections busy meanwhile. Each stream
    # still has at most one message in flight.
    streams = extra + 1
    reports = [SendReport() for _ in range(streams)]
    try:
        with ThreadPoolExecutor(extra, thread_name_prefix="send-stream") as pool:
            futures = [
                pool.submit(
                    _send_stream,
                    database,
                    sendable[k::streams],
                    composed,
                    mailer,
                    clock,
                    stop,
                    part,
                )
                for k, part in enumerate(reports[1:], start=1)
            ]
            _send_stream(database, sendable[0::streams], composed, mailer, clock, stop, reports[0])
            wait(futures)
    finally:
        _EXTRA_STREAMS.release(extra)
    for part in reports:
        report.add(part)
    for future in futures:
        future.result()  # a stream's failure (the database went away) is the task's
    return report


class _StreamSlots:
    """Extra send streams this process may run, all tasks together: no more
    than the SMTP pool has connections, so the streams of concurrent tasks (a
    thread-pool worker) neither queue on the pool nor crowd the database pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use = 0

    def take(self, limit: int, wanted: int) -> int:
        with self._lock:
            granted = max(min(wanted, limit - self._in_use), 0)
            self._in_use += granted
            return granted

    def release(self, count: int) -> None:
        with self._lock:
            self._in_use -= count


_EXTRA_STREAMS = _StreamSlots()


def _take_extra_streams(settings: Settings, wanted: int) -> int:
    """Streams beyond the task's own: only over SMTP (the outbox gains nothing),
    up to the SMTP pool's spare connections."""
    if not settings.smtp_url or wanted <= 0:
        return 0
    return _EXTRA_STREAMS.take(max(settings.smtp_pool_size - 1, 0), wanted)


def _ledger_connection(database: Database) -> Connection:
    """A connection for a send loop's one-statement steps. On PostgreSQL in
    autocommit, so a step is one round trip (no BEGIN, no COMMIT); SQLite is in
    process, and keeps its ordinary transactions."""
    connection = database.engine.connect()
    if database.engine.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def _send_stream(
    database: Database,
    deliveries: Sequence[Delivery],
    composed: dict[int, tuple[str, dict[str, Any]]],
    mailer: Mailer,
    clock: Callable[[], datetime],
    stop: Callable[[], bool] | None,
    report: SendReport,
) -> None:
    """Claim, hand over and settle ``deliveries`` one claim at a time, in order."""
    size = max(mailer.settings.send_claim_size, 1)
    # One connection for the whole loop: a message sent costs the ledger one
    # statement (its outcome and the next claim), without a pool checkout each time.
    with _ledger_connection(database) as connection:
        # The last outcome not yet recorded: it rides in the same statement as the
        # next claim.
        unrecorded: tuple[Delivery, Outcome] | None = None
        for start in range(0, len(deliveries), size):
            if stop is not None and stop():
                break
            group = deliveries[start : start + size]
            messages = [mailer.build(d, *composed[d.id]) for d in group]
            attempts = _commit_step(
                database, connection, unrecorded, [d.id for d in group], clock(), report
            )
            unrecorded = None
            for delivery, message in zip(group, messages, strict=True):
                if delivery.id not in attempts:
                    continue  # another task claimed it first, or it was settled meanwhile
                if unrecorded is not None:
                    _commit_step(database, connection, unrecorded, [], clock(), report)
                delivery.attempts = attempts[delivery.id]
                unrecorded = (delivery, _hand_over(mailer, delivery, message))
        if unrecorded is not None:
            _commit_step(database, connection, unrecorded, [], clock(), report)


def _hand_over(mailer: Mailer, delivery: Delivery, message: bytes) -> Outcome:
    """Give one message to the sender; its refusal is an outcome, not an error."""
    try:
        mailer.sender.send(envelope_from(mailer.settings, delivery), delivery.recipient, message)
    except (TemporaryFailure, PermanentFailure) as failure:
        SMTP_RESPONSES.labels(smtp_class(failure.code)).inc()
        return failure
    SMTP_RESPONSES.labels("2xx").inc()
    return DeliveryState.SENT


def _commit_step(
    database: Database,
    connection: Connection,
    outcome: tuple[Delivery, Outcome] | None,
    claim_ids: Sequence[int],
    now: datetime,
    report: SendReport,
) -> dict[int, int]:
    """Record the previous message's outcome and claim the next rows, committed.

    Returns ``{id: attempts}`` of the rows claimed. A message accepted is one
    autocommitted statement on ``connection``; a refusal (retry, bounce: several
    writes) is one transaction of its own. A failure here (the database went
    away) propagates: nothing more is sent, and at most the one message whose
    outcome was being recorded goes out again once the sweeper returns it.
    """
    state: str | None = None
    if outcome is None or outcome[1] is DeliveryState.SENT:
        sent_id = outcome[0].id if outcome is not None else None
        try:
            claimed = record_sent_and_claim(connection, sent_id, claim_ids, now)
            connection.commit()  # in autocommit, no round trip: nothing is open
        except BaseException:
            connection.rollback()
            raise
        state = DeliveryState.SENT.value if outcome is not None else None
    else:
        with database.session_scope() as session:
            state = _settle_one(session, *outcome, now, report)
            claimed = claim_for_sending(session, claim_ids, now)
    if outcome is not None and state is not None:
        if state == DeliveryState.SENT.value:
            report.sent += 1
        _count_and_log(outcome[0], state, outcome[1])
    return claimed


def _settle_one(
    session: Session, delivery: Delivery, outcome: Outcome, now: datetime, report: SendReport
) -> str:
    """Record one message's outcome; returns the state name the delivery ends in."""
    if outcome is DeliveryState.SENT:
        settle(session, [delivery.id], DeliveryState.SENT, now)
        return DeliveryState.SENT.value
    return _settle_failure(session, delivery, outcome, now, report)


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
