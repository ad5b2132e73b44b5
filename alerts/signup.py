"""Self-service for readers: sign up with double opt-in, confirm, manage, leave.

Nothing here commits: the web layer owns the transaction, and the one mail
sign-up promises is queued only after commit (``queue_sending``). Three rules
shape the functions:

- no enumeration: ``sign_up`` tells its caller nothing about whether the
  address was known, so the page it leads to is the same for everyone;
- nothing but the confirmation mail reaches a pending address (the outbound
  ``_blocked`` check refuses every other kind for readers who are not
  confirmed, and refuses confirmations for readers who are);
- every change takes effect at once: interests carry ``updated_at``, which
  the workers' index refresh watches.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import audit, subscribers
from alerts.audit import Actor
from alerts.compose import reader_locales
from alerts.config import Settings
from alerts.delivery.queueing import queue_sending
from alerts.errors import AlertsError
from alerts.i18n import ENGLISH_UTC
from alerts.i18n import LANGUAGES as LANGUAGE_NAMES
from alerts.links import confirm_link, subscriber_links
from alerts.matching import QueryError, UnknownRegionError, fold, tokenize
from alerts.matching.service import PreviewHit, preview_interest, reached_matches
from alerts.models import (
    Delivery,
    DeliveryKind,
    Frequency,
    Interest,
    Match,
    RateEvent,
    Subscriber,
    SubscriberStatus,
)
from alerts.regions import default_gazetteer
from alerts.subscribers import (
    CONFIRMATION_RESEND_AFTER,
    InterestError,
    SubscriberError,
    check_interest_cap,
    normalised_address,
    parse_frequency,
    parse_language,
    parse_send_at,
    parse_timezone,
    promise_confirmation,
    validated_interest,
)
from alerts.webhooks import emit

# Rate limits on sign-up, counted in ``rate_events`` so every web process
# shares them. Candidates for settings (signup_max_per_ip_per_hour,
# signup_max_per_address_per_hour); constants until the settings exist.
SIGNUPS_PER_IP_PER_WINDOW = 10
SIGNUPS_PER_ADDRESS_PER_WINDOW = 3
RATE_WINDOW = timedelta(hours=1)
CONSENT_SOURCE = "web sign-up"
LANGUAGES = dict(LANGUAGE_NAMES)
# Preview: how far back to look and how many hits to show. Each article in
# the window is analysed on request, so the window stays short.
PREVIEW_WINDOW = timedelta(days=7)
PREVIEW_LIMIT = 5
# The public form helpers are rate-limited per minute (ALERTS_PREVIEW_PER_MINUTE).
FORM_HELPER_WINDOW = timedelta(minutes=1)
REGION_SUGGESTIONS = 10
MIN_SUGGEST_CHARS = 2
AUDIT_ACTOR = "subscriber"
# A pending sign-up request is named by a random nonce, which its confirmation
# link carries: a link confirms exactly the request its mail described.
PENDING_NONCE_BYTES = 8
CONFIRM_SEPARATOR = ":"


class RateLimitedError(AlertsError):
    """Too many attempts from one place or for one address; try again later."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"too many sign-up attempts {what}; try again in an hour")


class ConfirmOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"  # pending until now
    ALREADY = "already"  # confirmed before: a second click is harmless
    SUPERSEDED = "superseded"  # a newer sign-up replaced the request this link confirms
    INACTIVE = "inactive"  # unsubscribed, suspended or bounced since: sign up again
    UNKNOWN = "unknown"  # erased


# --- rate limits ----------------------------------------------------------


def _rate_key(kind: str, value: str, settings: Settings) -> str:
    """A key that names the IP or address without storing it in clear text."""
    digest = hmac.new(
        settings.resolved_secret_key.encode(), f"{kind}:{value}".encode(), hashlib.sha256
    ).hexdigest()
    return f"signup.{kind}.{digest[:40]}"


def check_rate(
    session: Session, key: str, limit: int, now: datetime, window: timedelta = RATE_WINDOW
) -> None:
    """Count one attempt under ``key``, or raise RateLimitedError when over ``limit``
    attempts in ``window``.

    Two requests racing past the count may both pass: the limit is a brake on
    abuse, not an exact quota, and a lock per key would cost more than it saves.
    """
    since = now - window
    # Old events of this key are dead weight; dropping them keeps the table small.
    session.execute(delete(RateEvent).where(RateEvent.key == key, RateEvent.at < since))
    count = session.scalar(
        select(func.count(RateEvent.id)).where(RateEvent.key == key, RateEvent.at >= since)
    )
    if (count or 0) >= limit:
        raise RateLimitedError(key.split(".")[1])
    session.add(RateEvent(key=key, at=now))
    session.flush()


# --- sign-up and confirmation ----------------------------------------------


@dataclass
class SignupForm:
    """What the public form sends, as typed."""

    email: str
    query: str = ""
    regions: list[str] = field(default_factory=list)
    frequency: str = Frequency.DAILY.value
    timezone: str = "UTC"
    send_at: str = "07:00"
    language: str = "en"


def sign_up(
    session: Session, form: SignupForm, client: str, settings: Settings, now: datetime
) -> list[int]:
    """Note what was asked for and promise one confirmation mail; flush only.

    Nothing about an existing reader changes here: the choices wait in
    ``pending_signup`` until the link in the mail is used (``confirm``), so a
    stranger who types somebody's address changes nothing. Every status takes
    the same path (one row written, one mail promised), so neither the answer
    nor its timing tells whether the address was already subscribed; the mail
    itself says which (``compose_confirmations``), and the outbound check drops
    it for suspended and bounced readers.

    Raises SubscriberError for bad input (the same for every address) and
    RateLimitedError. Returns the confirmation ledger ids queued, which
    callers must not show.
    """
    email = normalised_address(form.email)
    parse_language(form.language)
    # Everything validated before counting, so a typo uses up nobody's quota.
    query, region_ids = validated_interest(form.query, form.regions, settings)
    choices = SettingsForm(form.frequency, form.timezone, form.send_at, form.language)
    update_settings(Subscriber(), choices)  # validation only: a throwaway reader
    check_rate(session, _rate_key("ip", client, settings), SIGNUPS_PER_IP_PER_WINDOW, now)
    check_rate(session, _rate_key("address", email, settings), SIGNUPS_PER_ADDRESS_PER_WINDOW, now)
    frequency = Frequency(choices.frequency.strip().lower())
    send_at = parse_send_at(choices.send_at)
    request: dict[str, Any] = {
        "nonce": secrets.token_hex(PENDING_NONCE_BYTES),
        "requested_at": now.isoformat(),
        "query": query,
        "regions": region_ids,
        "frequency": frequency.value,
        "timezone": choices.timezone.strip(),
        "send_at": send_at.strftime("%H:%M"),
        "language": choices.language,
    }
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    if subscriber is not None and _recently_asked(session, subscriber, now):
        # The mail sent within the hour still holds the earlier request; its
        # link must keep meaning what that mail said.
        return []
    try:
        # One row written either way, in a savepoint either way: a new address
        # gets a pending row holding nothing but the request, like everybody.
        with session.begin_nested():
            if subscriber is None:
                subscriber = Subscriber(
                    email=email,
                    frequency=frequency,
                    timezone=choices.timezone.strip(),
                    send_at=send_at,
                    language=choices.language,
                    consent_source=CONSENT_SOURCE,
                    status=SubscriberStatus.PENDING,
                    created_at=now,
                    last_digest_at=now,
                )
                session.add(subscriber)
            subscriber.pending_signup = request
            session.flush()
    except IntegrityError:
        # A concurrent sign-up for the same address won the insert and
        # promised the confirmation; this one answers the same and sends nothing.
        return []
    ids = promise_confirmation(session, subscriber, settings, now)
    queue_sending(session, ids, settings, urgent=True)
    return ids


def _last_confirmation_at(session: Session, subscriber: Subscriber) -> datetime | None:
    return session.scalar(
        select(func.max(Delivery.created_at)).where(
            Delivery.subscriber_id == subscriber.id, Delivery.kind == DeliveryKind.CONFIRMATION
        )
    )


def _recently_asked(session: Session, subscriber: Subscriber, now: datetime) -> bool:
    latest = _last_confirmation_at(session, subscriber)
    return latest is not None and latest > now - CONFIRMATION_RESEND_AFTER


def resend_confirmation(
    session: Session,
    actor: Actor,
    id_or_email: str,
    settings: Settings,
    now: datetime,
    *,
    via: str | None = None,
) -> Subscriber:
    """Promise a pending reader the double opt-in mail again, audited; flush only.

    For an admin whose reader lost the first mail. The sign-up's own limit
    holds (one confirmation an hour per reader), so nobody's mailbox is
    flooded from here either. SubscriberError names why nothing was sent: no
    such reader, a reader who is confirmed or no longer pending, or a mail
    within the hour.
    """
    subscriber = subscribers.find_subscriber(session, id_or_email)
    if subscriber is None:
        raise SubscriberError(f"no subscriber {id_or_email.strip()}")
    if subscriber.status is SubscriberStatus.CONFIRMED:
        raise SubscriberError(f"{subscriber.email} is confirmed already: nothing to confirm")
    if subscriber.status is not SubscriberStatus.PENDING:
        raise SubscriberError(
            f"{subscriber.email} is {subscriber.status.value}: only a pending reader "
            "is sent a confirmation"
        )
    ids = promise_confirmation(session, subscriber, settings, now)
    if not ids:
        latest = _last_confirmation_at(session, subscriber) or now
        again = latest + CONFIRMATION_RESEND_AFTER
        raise SubscriberError(
            f"a confirmation went to {subscriber.email} at {latest:%H:%M} UTC; "
            f"another can go after {again:%H:%M} UTC"
        )
    queue_sending(session, ids, settings, urgent=True)
    audit.record(
        session,
        actor,
        "subscriber.resend_confirmation",
        "subscriber",
        subscriber.id,
        now=now,
        via=via,
    )
    return subscriber


def _apply_pending(
    session: Session,
    subscriber: Subscriber,
    pending: dict[str, Any],
    settings: Settings,
    now: datetime,
) -> None:
    """Apply a confirmed sign-up request: its settings, and its interest.

    A reader who was already confirmed gains the interest beside theirs; one
    who was pending or had left starts over with just this one.
    """
    update_settings(
        subscriber,
        SettingsForm(
            str(pending.get("frequency", Frequency.DAILY.value)),
            str(pending.get("timezone", "UTC")),
            str(pending.get("send_at", "07:00")),
            str(pending.get("language", "en")),
            _clock(subscriber.quiet_start) or "",
            _clock(subscriber.quiet_end) or "",
        ),
    )
    query = pending.get("query")
    regions = list(pending.get("regions") or [])
    if subscriber.status is not SubscriberStatus.CONFIRMED:
        subscriber.interests.clear()
        session.flush()
    if query or regions:
        same = any(
            i.query == query and list(i.regions or []) == regions for i in subscriber.interests
        )
        if not same:
            check_interest_cap(subscriber, settings)
            subscriber.interests.append(
                Interest(query=query, regions=regions, created_at=now, updated_at=now)
            )


def compose_confirmations(
    session: Session, deliveries: Sequence[Delivery], settings: Settings, now: datetime
) -> dict[int, tuple[str, dict[str, Any]]]:
    """Template contexts of confirmation mails.

    The link expires relative to the promise, not the send, so a retry of the
    same delivery builds the same message; it names the pending request read
    here, so it confirms exactly what this mail describes. A reader who is
    already subscribed is told so, with the changes asked for. The mail, and
    the page its link opens, speak the language the reader chose.
    """
    ids = {d.subscriber_id for d in deliveries if d.subscriber_id is not None}
    readers = {s.id: s for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(ids)))}
    locales = reader_locales(session, ids)
    contexts: dict[int, tuple[str, dict[str, Any]]] = {}
    for delivery in deliveries:
        reader = readers.get(delivery.subscriber_id or -1)
        if delivery.subscriber_id is None or reader is None:
            continue
        pending = reader.pending_signup
        language = locales.get(delivery.subscriber_id, ENGLISH_UTC).language
        if pending and reader.status is not SubscriberStatus.CONFIRMED:
            language = str(pending.get("language") or language)
        contexts[delivery.id] = (
            "confirmation",
            {
                "language": language,
                "subscriber": {"email": delivery.recipient},
                "confirm_url": confirm_link(
                    settings,
                    confirm_subject(delivery.subscriber_id, pending),
                    delivery.created_at,
                    language,
                ),
                "expires_hours": settings.confirmation_valid_hours,
                "already_subscribed": reader.status is SubscriberStatus.CONFIRMED,
                "asked_for": _describe(pending),
                "links": subscriber_links(
                    settings,
                    delivery.subscriber_id,
                    language,
                    version=reader.token_version,
                    issued_at=delivery.created_at,
                ),
            },
        )
    return contexts


def _describe(pending: dict[str, Any] | None) -> str:
    """The interest a request asks for, as the reader typed it (query, then regions)."""
    if not pending:
        return ""
    regions = default_gazetteer().regions
    names = [regions[r].name if r in regions else r for r in pending.get("regions") or []]
    return " · ".join(part for part in [pending.get("query") or "", ", ".join(names)] if part)


def confirm_subject(subscriber_id: int, pending: dict[str, Any] | None) -> str:
    """The subject of a confirmation link: the reader and the request it confirms."""
    nonce = pending.get("nonce") if pending else None
    return f"{subscriber_id}{CONFIRM_SEPARATOR}{nonce}" if nonce else str(subscriber_id)


def parse_confirm_subject(subject: str) -> tuple[int, str | None]:
    """(subscriber id, request nonce or None for links made before requests were kept)."""
    reader, separator, nonce = subject.partition(CONFIRM_SEPARATOR)
    return int(reader), nonce if separator else None


def confirm(
    session: Session,
    subscriber_id: int,
    now: datetime,
    settings: Settings,
    nonce: str | None = None,
) -> ConfirmOutcome:
    """Apply the sign-up request the link names and make the reader confirmed; flush only.

    A link whose request was already applied answers ALREADY; one whose
    request was replaced by a newer sign-up answers SUPERSEDED.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return ConfirmOutcome.UNKNOWN
    if subscriber.status in (SubscriberStatus.SUSPENDED, SubscriberStatus.BOUNCED):
        return ConfirmOutcome.INACTIVE
    pending = subscriber.pending_signup
    if nonce is not None and (pending is None or pending.get("nonce") != nonce):
        if subscriber.status is SubscriberStatus.CONFIRMED:
            return ConfirmOutcome.ALREADY
        return ConfirmOutcome.SUPERSEDED
    if nonce is None and subscriber.status is not SubscriberStatus.PENDING:
        # An old link without a request: it can only confirm a pending reader.
        if subscriber.status is SubscriberStatus.CONFIRMED:
            return ConfirmOutcome.ALREADY
        return ConfirmOutcome.INACTIVE
    was_confirmed = subscriber.status is SubscriberStatus.CONFIRMED
    if pending is not None and nonce is not None:
        _apply_pending(session, subscriber, pending, settings, now)
        subscriber.pending_signup = None
    if not was_confirmed:
        subscriber.status = SubscriberStatus.CONFIRMED
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
        subscriber.paused = False
        subscriber.consent_source = CONSENT_SOURCE
        # The first digest covers what matches from now on, not the pending days.
        subscriber.last_digest_at = now
        emit(session, "subscriber.confirmed", {"subscriber_id": subscriber.id}, now)
    session.flush()
    return ConfirmOutcome.CONFIRMED


def sign_out_links(subscriber: Subscriber) -> None:
    """Every preference and unsubscribe link sent so far stops working."""
    subscriber.token_version += 1


PREFERENCE_WRITE_KEY = "preferences.write"


def check_preference_writes(
    session: Session, subscriber: Subscriber, settings: Settings, now: datetime
) -> None:
    """Count one preference-centre change, or RateLimitedError past the hourly cap."""
    key = f"{PREFERENCE_WRITE_KEY}.{subscriber.id}"
    try:
        check_rate(session, key, settings.preference_writes_per_hour, now)
    except RateLimitedError as error:
        raise RateLimitedError("for this reader") from error


# --- the preference centre -------------------------------------------------


@dataclass
class SettingsForm:
    """Delivery settings as typed in the preference centre."""

    frequency: str
    timezone: str
    send_at: str
    language: str
    quiet_start: str = ""
    quiet_end: str = ""


def _optional_time(value: str, what: str) -> time | None:
    if not value.strip():
        return None
    try:
        return parse_send_at(value)
    except SubscriberError as error:
        raise SubscriberError(f"{what} {value!r} is not HH:MM") from error


def update_settings(subscriber: Subscriber, form: SettingsForm) -> None:
    """Validate every field first, then apply them all (or none)."""
    frequency = parse_frequency(form.frequency)
    timezone = parse_timezone(form.timezone)
    send_at = parse_send_at(form.send_at)
    language = parse_language(form.language)
    quiet_start = _optional_time(form.quiet_start, "quiet hours start")
    quiet_end = _optional_time(form.quiet_end, "quiet hours end")
    if (quiet_start is None) != (quiet_end is None):
        raise SubscriberError("quiet hours need both a start and an end time")
    if quiet_start is not None and quiet_start == quiet_end:
        raise SubscriberError("quiet hours must start and end at different times")
    subscriber.frequency = frequency
    subscriber.timezone = timezone
    subscriber.send_at = send_at
    subscriber.language = language
    subscriber.quiet_start = quiet_start
    subscriber.quiet_end = quiet_end


def _own_interest(subscriber: Subscriber, interest_id: int) -> Interest:
    for interest in subscriber.interests:
        if interest.id == interest_id:
            return interest
    raise SubscriberError("that interest is not yours or no longer exists")


def add_interest(
    session: Session,
    subscriber: Subscriber,
    query: str,
    regions: Iterable[str],
    settings: Settings,
    now: datetime,
) -> Interest:
    """The reader's own new interest (the preference centre), audited as theirs."""
    return subscribers.add_interest(
        session, AUDIT_ACTOR, subscriber, query, regions, settings, now, via="preferences"
    )


def edit_interest(
    session: Session,
    subscriber: Subscriber,
    interest_id: int,
    query: str,
    regions: Iterable[str],
    settings: Settings,
    now: datetime,
) -> Interest:
    """Change one of the reader's own interests (never another reader's)."""
    interest = _own_interest(subscriber, interest_id)
    return subscribers.edit_interest(
        session, AUDIT_ACTOR, interest, query, regions, settings, now, via="preferences"
    )


def remove_interest(session: Session, subscriber: Subscriber, interest_id: int) -> None:
    subscriber.interests.remove(_own_interest(subscriber, interest_id))
    session.flush()


def set_paused(subscriber: Subscriber, paused: bool) -> None:
    """Pausing holds alerts and digests; newsletters still go (see outbound ``_blocked``)."""
    subscriber.paused = paused


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about a reader, as JSON values (the right of access)."""
    deliveries = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber.id).order_by(Delivery.id)
    )
    matches = session.execute(
        reached_matches([subscriber.id]).order_by(Match.matched_at, Match.id, Interest.id)
    )
    return {
        "subscriber": {
            "id": subscriber.id,
            "email": subscriber.email,
            "name": subscriber.name,
            "status": subscriber.status.value,
            "frequency": subscriber.frequency.value,
            "timezone": subscriber.timezone,
            "send_at": subscriber.send_at.strftime("%H:%M"),
            "weekly_day": subscriber.weekly_day,
            "language": subscriber.language,
            "paused": subscriber.paused,
            "quiet_start": _clock(subscriber.quiet_start),
            "quiet_end": _clock(subscriber.quiet_end),
            "consent_source": subscriber.consent_source,
            "created_at": _iso(subscriber.created_at),
            "confirmed_at": _iso(subscriber.confirmed_at),
            "unsubscribed_at": _iso(subscriber.unsubscribed_at),
            "last_digest_at": _iso(subscriber.last_digest_at),
        },
        "interests": [
            {
                "id": interest.id,
                "query": interest.query,
                "regions": list(interest.regions or []),
                "created_at": _iso(interest.created_at),
                "updated_at": _iso(interest.updated_at),
            }
            for interest in subscriber.interests
        ],
        "deliveries": [
            {
                "id": delivery.id,
                "kind": delivery.kind.value,
                "state": delivery.state.value,
                "recipient": delivery.recipient,
                "article_id": delivery.article_id,
                "newsletter_id": delivery.newsletter_id,
                "message_id": delivery.message_id,
                "created_at": _iso(delivery.created_at),
                "sent_at": _iso(delivery.sent_at),
            }
            for delivery in deliveries
        ],
        "matches": [
            {
                "article_id": match.article_id,
                "interest_id": match.interest_id,
                "score": match.score,
                "explanation": match.explanation,
                "matched_at": _iso(match.matched_at),
            }
            for match in matches
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _clock(moment: time | None) -> str | None:
    return moment.strftime("%H:%M") if moment else None


def erase(session: Session, subscriber_id: int, now: datetime) -> bool:
    """The reader's own erasure (their preference link): :func:`subscribers.erase`."""
    return subscribers.erase(session, AUDIT_ACTOR, subscriber_id, now)


# --- helpers for the form: query check, preview, region suggestions ---------


@dataclass(frozen=True)
class QueryCheck:
    ok: bool
    message: str = ""
    position: int | None = None


def check_query(query: str, settings: Settings) -> QueryCheck:
    """Whether a keyword query would be accepted, and if not, what and where."""
    if not query.strip():
        return QueryCheck(ok=True)
    try:
        validated_interest(query, (), settings)
    except InterestError as error:
        return QueryCheck(ok=False, message=error.message, position=error.position)
    return QueryCheck(ok=True)


def count_form_helper_call(
    session: Session, helper: str, client: str, settings: Settings, now: datetime
) -> None:
    """Count one call of a public form helper (``preview``, ``query-check``) by
    ``client``; RateLimitedError past ``preview_per_minute`` in a minute."""
    key = _rate_key(f"{helper}-ip", client, settings)
    # Every client leaves events behind, most never to come back: expired ones
    # of this helper go now (the (key, at) index serves the prefix).
    prefix = key[: key.rindex(".") + 1]
    session.execute(
        delete(RateEvent).where(
            RateEvent.key.startswith(prefix), RateEvent.at < now - FORM_HELPER_WINDOW
        )
    )
    check_rate(session, key, settings.preview_per_minute, now, window=FORM_HELPER_WINDOW)


def preview(
    session: Session, query: str, regions: Sequence[str], settings: Settings, now: datetime
) -> list[PreviewHit]:
    """Recent stored articles this interest would have matched; SubscriberError if bad.

    Bounded for a caller who need not sign in: the newest
    ``preview_max_articles`` articles of the window at most, and it stops at
    the few hits the form shows.
    """
    clean_query, region_ids = validated_interest(query, regions, settings)
    try:
        return preview_interest(
            session,
            clean_query,
            region_ids,
            since=now - PREVIEW_WINDOW,
            gazetteer=default_gazetteer(),
            settings=settings,
            limit=PREVIEW_LIMIT,
            max_articles=settings.preview_max_articles,
        )
    except (QueryError, UnknownRegionError) as error:
        raise SubscriberError(str(error)) from error


@dataclass(frozen=True)
class RegionSuggestion:
    id: str
    name: str
    kind: str
    within: str  # the first parent's name, to tell Georgia from Georgia
    value: str  # what to put in the form so it resolves back to this region


def region_input_value(region_id: str) -> str:
    """The name when it resolves back to this region, else the id (the US state Georgia)."""
    region = default_gazetteer().regions[region_id]
    try:
        resolved = default_gazetteer().resolve(region.name).id
    except ValueError:
        resolved = ""
    return region.name if resolved == region_id else region_id


@lru_cache(maxsize=1)
def _region_names() -> list[tuple[tuple[str, ...], str]]:
    """(folded name words, id) for every region, built once per process."""
    return [(tuple(tokenize(r.name)), r.id) for r in default_gazetteer().regions.values()]


def suggest_regions(text: str, limit: int = REGION_SUGGESTIONS) -> list[RegionSuggestion]:
    """Regions whose name starts with ``text`` (or has a word that does), or which
    ``text`` names exactly by any alias in any script; likeliest first."""
    folded = " ".join(tokenize(text))
    if len(folded) < MIN_SUGGEST_CHARS:
        return []
    gz = default_gazetteer()
    ranked: dict[str, tuple[int, float, str]] = {}
    for rank, region_id in enumerate(gz.candidates(text)):
        ranked[region_id] = (0, float(rank), "")
    for words, region_id in _region_names():
        name = " ".join(words)
        if name.startswith(folded):
            tier = 1
        elif any(word.startswith(folded) for word in words):
            tier = 2
        else:
            continue
        region = gz.regions[region_id]
        ranked.setdefault(region_id, (tier, -region.prior, fold(region.name)))
    best = sorted(ranked, key=lambda region_id: (*ranked[region_id], region_id))[:limit]
    suggestions = []
    for region_id in best:
        region = gz.regions[region_id]
        parent = gz.regions.get(region.parents[0]) if region.parents else None
        suggestions.append(
            RegionSuggestion(
                id=region.id,
                name=region.name,
                kind=region.kind,
                within=parent.name if parent else "",
                value=region_input_value(region.id),
            )
        )
    return suggestions
