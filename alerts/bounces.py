"""Reading mail that comes back: bounces, complaints, auto-replies, unsubscribe requests.

Behind a relay, a failed delivery returns minutes later as a mail to the
envelope sender. Every such message, however it arrives (``alerts bounces
parse``, and later an LMTP receiver or a polled mailbox), goes through
``classify``, which looks, in this order, for:

1. the VERP token of the return path (``<local>+<token>@<bounce domain>``),
   which names the delivery the message is about and cannot be forged;
2. an RFC 3464 delivery status notification (``multipart/report;
   report-type=delivery-status``): per recipient, its Action and Status;
3. an RFC 5965 complaint (``report-type=feedback-report``);
4. the heuristic detectors of flufl.bounce (the ones GNU Mailman uses) for MTAs
   that send prose instead of a DSN (Exim, qmail, old Exchange, Yahoo...);
5. an RFC 3834 auto-reply (out of office), which is never counted;
6. a reader's mail to the per-recipient ``mailto:`` unsubscribe address.

``classify`` touches no database: its ``BounceReport`` is then applied by
``record`` (suppression, scores, unsubscribes) in the caller's transaction.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any, Literal

from flufl.bounce import all_failures
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import (
    audit,
    subscribers,
)  # subscribers as a module: subscribers -> outbound -> bounces is a cycle
from alerts.audit import Actor
from alerts.config import Settings
from alerts.db import get_database, utcnow
from alerts.delivery.ledger import settle
from alerts.delivery.verp import UNSUBSCRIBE_LOCAL, VERP_SEPARATOR, delivery_from_address
from alerts.links import mail_domain
from alerts.models import (
    BounceEvent,
    Delivery,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from alerts.webhooks import emit

log = logging.getLogger("alerts.bounces")


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


Kind = Literal["hard", "soft", "complaint", "auto-reply", "unsubscribe", "not-a-bounce"]
# A bounce names its recipient in its first part; the original message it may
# quote is of no use beyond that, so a huge message is read only this far.
MAX_BOUNCE_BYTES = 2 * 1024 * 1024
# Mailbox full is a 5.2.2, but the mailbox exists and empties again: soft.
SOFT_PERMANENT_CODES = frozenset({"5.2.2"})
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Headers in which MTAs record the envelope recipient of the bounce itself.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
AUTO_REPLY_SUBJECTS = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit"
    r"|automatische antwort|автоответ|автоматический ответ|отсутству)",
    re.IGNORECASE,
)


@dataclass
class BounceReport:
    """What a message that came back says; the JSON of ``alerts bounces parse``."""

    kind: Kind
    recipients: list[str] = field(default_factory=list)
    status: str | None = None
    delivery: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- classification -----------------------------------------------------------------


def parse_message(raw: bytes) -> Message:
    return email.message_from_bytes(raw[:MAX_BOUNCE_BYTES], policy=email.policy.compat32)


def classify(
    raw: bytes,
    secret: str,
    *,
    bounce_domain: str | None = None,
    envelope_to: Sequence[str] = (),
) -> BounceReport:
    """What ``raw`` (a whole message as received) says about our mail.

    ``envelope_to`` are the RCPT TO addresses it came with, when known: the VERP
    address is always among them, whatever headers the MTA wrote.
    """
    message = parse_message(raw)
    delivery = next(
        (d for d in (delivery_from_address(a, secret) for a in envelope_to) if d is not None),
        None,
    ) or _delivery_named(message, secret)
    report = (
        _delivery_status(message)
        or _complaint(message)
        or _heuristic(message)
        or _auto_reply(message)
        or _unsubscribe_request(message)
        or BounceReport("not-a-bounce")
    )
    if bounce_domain:  # a bounce of a bounce: never a reader's address
        own = "@" + bounce_domain.lower()
        report.recipients = [r for r in report.recipients if not r.endswith(own)]
    report.delivery = delivery if report.kind != "not-a-bounce" else None
    return report


def _delivery_named(message: Message, secret: str) -> int | None:
    for header in ENVELOPE_HEADERS:
        for _name, address in getaddresses([str(v) for v in message.get_all(header, [])]):
            delivery = delivery_from_address(address, secret)
            if delivery is not None:
                return delivery
    original = _original_headers(message)
    if original is not None:
        for header in ("Return-Path", "From"):
            _name, address = parseaddr(str(original.get(header, "")))
            delivery = delivery_from_address(address, secret)
            if delivery is not None:
                return delivery
    return None


def _sub_messages(part: Message) -> list[Message]:
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [item for item in payload if isinstance(item, Message)]


def _decoded(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _report_parts(message: Message, report_type: str) -> list[Message]:
    """The sub-parts of a multipart/report of ``report_type`` (anywhere in the tree)."""
    found: list[Message] = []
    for part in message.walk():
        if (
            part.get_content_type() == "multipart/report"
            and str(part.get_param("report-type", "")).lower() == report_type
        ):
            found.extend(_sub_messages(part))
    return found


def _original_headers(message: Message) -> Message | None:
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            inner = _sub_messages(part)
            if inner:
                return inner[0]
        if content_type == "text/rfc822-headers":
            return email.message_from_bytes(_decoded(part), policy=email.policy.compat32)
    return None


def _address(field_value: str) -> str:
    """``rfc822; Reader@Example.org`` -> ``reader@example.org``."""
    _kind, _, address = field_value.partition(";")
    address = (address or field_value).strip().strip("<>")
    return address.lower()


def _status_kind(status: str | None, action: str) -> Kind:
    if action == "delayed":
        return "soft"
    if status is None:
        return "hard" if action == "failed" else "soft"
    if status.startswith("5") and status not in SOFT_PERMANENT_CODES:
        return "hard"
    return "soft"


def _delivery_status(message: Message) -> BounceReport | None:
    """RFC 3464: each recipient block has Final-Recipient, Action and Status."""
    for part in _report_parts(message, "delivery-status"):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = _sub_messages(part)
        failures: list[tuple[str, str | None, Kind]] = []
        for block in blocks[1:]:  # the first block describes the reporting MTA
            action = str(block.get("Action", "")).strip().lower()
            if action not in ("failed", "delayed"):
                continue
            # Without a recipient field the report still counts: the VERP
            # token names the delivery, and so the reader.
            recipient = block.get("Original-Recipient") or block.get("Final-Recipient")
            matched = _STATUS.search(str(block.get("Status", "")))
            status = ".".join(matched.groups()) if matched else None
            address = _address(str(recipient)) if recipient else ""
            failures.append((address, status, _status_kind(status, action)))
        if failures:
            # One hard failure makes the whole report hard: that address is gone.
            worst = next((f for f in failures if f[2] == "hard"), failures[0])
            return BounceReport(worst[2], sorted({f[0] for f in failures if f[0]}), worst[1])
    return None


def _complaint(message: Message) -> BounceReport | None:
    """RFC 5965: a reader pressed "this is spam" and their provider tells us."""
    for part in _report_parts(message, "feedback-report"):
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = _feedback_fields(part)
        if fields.get("feedback-type", "abuse").lower() == "not-spam":
            return None
        recipients = [_address(v) for k, v in fields.items() if k == "original-rcpt-to"]
        if not recipients:
            original = _original_headers(message)
            if original is not None:
                recipients = [
                    address.lower()
                    for _name, address in getaddresses([str(original.get("To", ""))])
                    if "@" in address
                ]
        return BounceReport("complaint", sorted(set(recipients)))
    return None


def _feedback_fields(part: Message) -> dict[str, str]:
    blocks = _sub_messages(part)
    if blocks:  # the email package reads it as header blocks
        return {key.lower(): str(value) for block in blocks for key, value in block.items()}
    parsed = email.message_from_bytes(_decoded(part), policy=email.policy.compat32)
    return {key.lower(): str(value) for key, value in parsed.items()}


def _heuristic(message: Message) -> BounceReport | None:
    """Bounces in prose: Mailman's detectors know the MTAs that write them."""
    try:
        temporary, permanent = all_failures(message)
    except Exception:
        log.warning("bounce detectors failed on a message", exc_info=True)
        return None
    if not temporary and not permanent:
        return None
    addresses = sorted(
        {a.decode("utf-8", "replace").lower() for a in (permanent or temporary) if a}
    )
    matched = _STATUS.search(_text_of(message))
    status = ".".join(matched.groups()) if matched else None
    kind: Kind = "hard" if permanent else "soft"
    if status in SOFT_PERMANENT_CODES:
        kind = "soft"
    return BounceReport(kind, addresses, status)


def _text_of(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode("utf-8", "replace"))
    return "\n".join(texts)


def _sender(message: Message) -> list[str]:
    _name, address = parseaddr(str(message.get("From", "")))
    return [address.lower()] if "@" in address else []


def _auto_reply(message: Message) -> BounceReport | None:
    """RFC 3834 and the common non-standard markers; never counted as a bounce."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    marked = (
        auto.startswith("auto-replied")
        or precedence == "auto_reply"
        or message.get("X-Autoreply") is not None
        or message.get("X-Autorespond") is not None
        or AUTO_REPLY_SUBJECTS.match(str(message.get("Subject", ""))) is not None
    )
    return BounceReport("auto-reply", _sender(message)) if marked else None


def _unsubscribe_request(message: Message) -> BounceReport | None:
    """A reader's mail to the ``mailto:`` of List-Unsubscribe."""
    for header in ENVELOPE_HEADERS:
        for _name, address in getaddresses([str(v) for v in message.get_all(header, [])]):
            local = address.rpartition("@")[0].lower()
            if local == UNSUBSCRIBE_LOCAL or local.startswith(UNSUBSCRIBE_LOCAL + VERP_SEPARATOR):
                return BounceReport("unsubscribe", _sender(message))
    return None


# --- recording: the bounce policy ---------------------------------------------------


@dataclass
class Recorded:
    """What recording one report did, per address: for logs, the CLI and tests."""

    email: str
    action: str  # suppressed | scored | unsubscribed | ignored | unknown recipient
    score: float = 0.0


def bounce_score(session: Session, email: str, settings: Settings, now: datetime) -> float:
    """The reader's recent bounces, each fading linearly to nothing over the window."""
    window = timedelta(days=settings.bounce_window_days)
    events = session.execute(
        select(BounceEvent.weight, BounceEvent.received_at).where(
            BounceEvent.email == email, BounceEvent.received_at > now - window
        )
    ).all()
    return sum(weight * (1 - (now - at) / window) for weight, at in events)


def record(
    session: Session,
    report: BounceReport,
    settings: Settings,
    now: datetime,
    *,
    proven: bool = False,
) -> list[Recorded]:
    """Apply the bounce policy to one report, like Mailman's per-member scores.

    A hard bounce or a complaint proven by the VERP token suppresses at once; a
    soft bounce, or a hard one nothing proves, adds to a score that fades over
    ``ALERTS_BOUNCE_WINDOW_DAYS``, and crossing ``ALERTS_BOUNCE_SCORE_THRESHOLD``
    suppresses. ``proven`` says the report is authentic by other means (a
    provider's signed webhook). Only addresses of known readers are ever
    touched, so a forged report about a stranger changes nothing. Auto-replies
    are never counted.
    """
    if report.kind in ("auto-reply", "not-a-bounce"):
        return [Recorded(address, "ignored") for address in report.recipients]
    delivery = session.get(Delivery, report.delivery) if report.delivery else None
    verified = delivery is not None or proven
    if delivery is not None:
        addresses = [delivery.recipient]
    elif report.kind == "unsubscribe":
        addresses = report.recipients  # the From of a reader's own mail
    else:
        addresses = report.recipients
    outcomes = []
    for address in addresses:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address.lower()))
        if subscriber is None:
            outcomes.append(Recorded(address, "unknown recipient"))
            continue
        outcomes.append(_apply(session, report, subscriber, delivery, verified, settings, now))
    return outcomes


def _apply(
    session: Session,
    report: BounceReport,
    subscriber: Subscriber,
    delivery: Delivery | None,
    verified: bool,
    settings: Settings,
    now: datetime,
) -> Recorded:
    email = subscriber.email
    weight = 0.0
    if report.kind == "unsubscribe":
        subscribers.unsubscribe(session, subscriber.id, now)
        action = "unsubscribed"
    elif report.kind == "complaint":
        suppress(session, email, SuppressionReason.COMPLAINT, "spam complaint", now)
        subscribers.unsubscribe(session, subscriber.id, now)
        action = "suppressed"
    elif report.kind == "hard" and verified:
        _bounced(session, subscriber, delivery, f"hard bounce {report.status or ''}".strip(), now)
        action = "suppressed"
    else:
        weight = (
            settings.bounce_soft_weight
            if report.kind == "soft"
            else (settings.bounce_unproven_hard_weight)
        )
        action = "scored"
    session.add(
        BounceEvent(
            email=email,
            subscriber_id=subscriber.id,
            delivery_id=delivery.id if delivery else None,
            kind=report.kind,
            status=report.status,
            verified=verified,
            weight=weight,
            action=action,
            received_at=now,
        )
    )
    session.flush()
    score = bounce_score(session, email, settings, now)
    if action == "scored" and score >= settings.bounce_score_threshold:
        _bounced(session, subscriber, delivery, f"bounce score {score:.1f}", now)
        action = "suppressed"
    return Recorded(email, action, round(score, 2))


def _bounced(
    session: Session,
    subscriber: Subscriber,
    delivery: Delivery | None,
    reason: str,
    now: datetime,
) -> None:
    suppress(session, subscriber.email, SuppressionReason.HARD_BOUNCE, reason, now)
    if subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.BOUNCED
    if delivery is not None and delivery.state is DeliveryState.SENT:
        delivery.state = DeliveryState.BOUNCED  # the relay took it; the mailbox did not
        delivery.reason = reason
    emit(
        session,
        "delivery.bounced",
        {
            "delivery_id": delivery.id if delivery else None,
            "subscriber_id": subscriber.id,
            "reason": reason,
        },
        now,
    )


def reactivate(session: Session, actor: Actor, subscriber: Subscriber) -> bool:
    """An admin's "this address works again": off the list, score cleared, audited."""
    if subscriber.status is not SubscriberStatus.BOUNCED:
        return False
    session.execute(delete(Suppression).where(Suppression.email == subscriber.email))
    session.execute(delete(BounceEvent).where(BounceEvent.email == subscriber.email))
    subscriber.status = SubscriberStatus.CONFIRMED
    audit.record(session, actor, "subscriber.reactivate", "subscriber", subscriber.id)
    return True


def history(session: Session, subscriber_id: int, limit: int = 50) -> list[BounceEvent]:
    """A reader's returned mail, newest first, for the console."""
    return list(
        session.scalars(
            select(BounceEvent)
            .where(BounceEvent.subscriber_id == subscriber_id)
            .order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
            .limit(limit)
        )
    )


def bounce_domain(settings: Settings) -> str:
    """Where returned mail is addressed: the setting, or the From address's domain."""
    return settings.bounce_domain or mail_domain(settings)


def take_in(raw: bytes, envelope_to: Sequence[str], settings: Settings) -> list[Recorded]:
    """Classify one returned message and apply the bounce policy (every way in calls this).

    It owns its transaction, like an edge: the receiver and the mailbox poller
    acknowledge or delete the message only once this has returned.
    """
    report = classify(
        raw,
        settings.resolved_secret_key,
        bounce_domain=bounce_domain(settings),
        envelope_to=envelope_to,
    )
    with get_database(settings).session_scope() as session:
        recorded = record(session, report, settings, utcnow())
    log.info(
        "returned mail: %s %s",
        report.kind,
        ", ".join(f"{r.email} {r.action}" for r in recorded) or "no reader",
        extra={"kind": report.kind, "delivery": report.delivery},
    )
    return recorded


# Gmail's and Yahoo's bulk-sender rules: spam complaints must stay under this share.
COMPLAINT_RATE_LIMIT = 0.003


@dataclass
class DayOfReturns:
    day: date
    sent: int
    bounced: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    @property
    def over_complaint_limit(self) -> bool:
        return self.complaint_rate >= COMPLAINT_RATE_LIMIT


def daily_returns(session: Session, now: datetime, days: int = 14) -> list[DayOfReturns]:
    """Mail sent, bounced and complained about per UTC day, newest first (three queries)."""
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)

    postgres = session.get_bind().dialect.name == "postgresql"

    def per_day(column: Any, *conditions: Any) -> dict[date, int]:
        # Grouped by UTC day in the database: a day may hold millions of rows.
        day = func.date(func.timezone("UTC", column)) if postgres else func.date(column)
        rows = session.execute(
            select(day, func.count()).where(column >= first, *conditions).group_by(day)
        )
        return {
            value if isinstance(value, date) else date.fromisoformat(str(value)): int(count)
            for value, count in rows
        }

    sent = per_day(Delivery.sent_at)
    bounced = per_day(BounceEvent.received_at, BounceEvent.kind.in_(("hard", "soft")))
    complaints = per_day(BounceEvent.received_at, BounceEvent.kind == "complaint")
    return [
        DayOfReturns(day, sent.get(day, 0), bounced.get(day, 0), complaints.get(day, 0))
        for day in ((now - timedelta(days=offset)).date() for offset in range(days))
    ]
