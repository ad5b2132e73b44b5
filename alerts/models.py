"""The data model (SQLAlchemy 2.0 typed mappings).

Every time is timezone-aware UTC in Python; ``UTCDateTime`` keeps it so on
SQLite too, which stores no zone.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime, time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from alerts.db import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL_LENGTH = 320  # RFC 5321: 64 for the local part + @ + 255 for the domain
Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")
TOKEN_VERSION_START = 2**30  # first token_version is below this; bumps add one


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out, stored as UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: every time must carry a zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _str_enum(enum_class: type[enum.StrEnum]) -> Enum:
    """A portable enum column: a VARCHAR holding the member values."""
    return Enum(
        enum_class,
        native_enum=False,
        length=20,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: Json,
        list[str]: Json,
    }


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    SUSPENDED = "suspended"
    BOUNCED = "bounced"


class Frequency(enum.StrEnum):
    IMMEDIATE = "immediate"
    DAILY = "daily"
    WEEKLY = "weekly"


class DeliveryKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    ALERT = "alert"
    DIGEST = "digest"
    NEWSLETTER = "newsletter"
    TEST = "test"


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"  # a digest window that had nothing to say: no empty mail


class MatchState(enum.StrEnum):
    """Where an article is in matching: the ledger that outlives a lost match task."""

    PENDING = "pending"  # stored; its match task is queued, lost, or running
    DONE = "done"  # matched, in the same transaction that stored its matches


class NewsletterStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    AWAITING_APPROVAL = "awaiting_approval"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


class Role(enum.StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    UNSUBSCRIBED = "unsubscribed"


class Source(Base):
    """A feed, page or file the clock polls for articles."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    poll_minutes: Mapped[int] = mapped_column(Integer, default=15)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    default_tags: Mapped[list[str]] = mapped_column(default=list)
    # Conditional GET validators from the last successful fetch.
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    next_poll_at: Mapped[datetime | None] = mapped_column(index=True)
    last_polled_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(20))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Article(Base):
    """One story as ingested. Exact duplicates are never stored twice; near
    duplicates (same story, other wording or source) point at the first copy."""

    __tablename__ = "articles"
    __table_args__ = (
        Index("ix_articles_published_at", "published_at"),
        # The match sweeper looks for pending articles only; almost every row is done.
        Index(
            "ix_articles_match_pending",
            "match_queued_at",
            postgresql_where=text("match_state = 'pending'"),
            sqlite_where=text("match_state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    source_name: Mapped[str | None] = mapped_column(String(200))
    guid: Mapped[str | None] = mapped_column(String(2000))
    url: Mapped[str | None] = mapped_column(String(2000))
    # Dedup keys: a hash of the normalised URL, of (source, guid), and of the
    # folded text. Each is unique, so a racing second ingest fails to insert.
    url_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    guid_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    title_key: Mapped[str] = mapped_column(String(64), index=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("articles.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(Text)
    lead: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(8))
    tags: Mapped[list[str]] = mapped_column(default=list)
    author: Mapped[str | None] = mapped_column(String(300))
    published_at: Mapped[datetime | None]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The matching ledger: written with the article, set to done with its matches.
    match_state: Mapped[MatchState] = mapped_column(
        _str_enum(MatchState), default=MatchState.PENDING
    )
    # When a match task was last queued for it; the sweeper queues it again
    # once this is older than ALERTS_MATCH_REQUEUE_AFTER_SECONDS.
    match_queued_at: Mapped[datetime | None]

    source: Mapped[Source | None] = relationship()


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Stored lower-cased, so uniqueness holds whatever case people type.
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[SubscriberStatus] = mapped_column(
        _str_enum(SubscriberStatus), default=SubscriberStatus.PENDING, index=True
    )
    frequency: Mapped[Frequency] = mapped_column(_str_enum(Frequency), default=Frequency.DAILY)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_at: Mapped[time] = mapped_column(Time, default=time(7, 0))
    weekly_day: Mapped[int] = mapped_column(Integer, default=0)  # Monday = 0
    language: Mapped[str] = mapped_column(String(8), default="en")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Immediate alerts wait while the local clock is inside [quiet_start, quiet_end).
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)
    consent_source: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # End of the last digest window planned: the next digest starts here.
    last_digest_at: Mapped[datetime | None]
    # Mixed into every preference and unsubscribe link; bumping it (unsubscribe,
    # erase, "sign out of all links") kills every link sent so far. New readers
    # start at a random value, so a reused id (SQLite) never revives old links.
    token_version: Mapped[int] = mapped_column(
        Integer, default=lambda: secrets.randbelow(TOKEN_VERSION_START), server_default="0"
    )
    # What a sign-up for an existing address asked for, applied only when the
    # confirmation link in the mail is used (see alerts.signup).
    pending_signup: Mapped[dict[str, Any] | None] = mapped_column(Json)

    interests: Mapped[list[Interest]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )


class Interest(Base):
    """A keyword query, a set of regions, or both (then both must hold)."""

    __tablename__ = "interests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    query: Mapped[str | None] = mapped_column(String(1000))
    regions: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
    # What the interest means, shared with every interest that means the same; set
    # by the match worker when it files the interest (NULL until then, or when the
    # distinct interest was pruned: the worker files it again).
    distinct_id: Mapped[int | None] = mapped_column(
        ForeignKey("distinct_interests.id", ondelete="SET NULL"), index=True
    )
    # The match run that linked it: older matches of that distinct interest were
    # found before this reader followed it, and do not reach them.
    distinct_since: Mapped[datetime | None]

    subscriber: Mapped[Subscriber] = relationship(back_populates="interests")


class DistinctInterest(Base):
    """One meaning (normalised query and regions) that any number of interests share.

    Matches are stored once per (article, distinct interest), so storage grows
    with what readers follow, not with how many follow it.
    """

    __tablename__ = "distinct_interests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # alerts.matching.index.match_key: SHA-256 of the canonical query and regions.
    match_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InterestLink(Base):
    """One stretch of time an interest meant a distinct interest.

    The open link (``until`` NULL) is the interest's current meaning, the one
    ``Interest.distinct_id`` names. An edit closes it and opens another, so the
    matches found under the old meaning stay the reader's, as they were when
    matches were stored per reader; closed links go with the prune once the
    matches they could reach are past their retention.
    """

    __tablename__ = "interest_links"
    __table_args__ = (
        # Reaching a reader's matches starts from their interests' links.
        Index("ix_interest_links_interest_id", "interest_id", "since"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    interest_id: Mapped[int] = mapped_column(ForeignKey("interests.id", ondelete="CASCADE"))
    distinct_id: Mapped[int] = mapped_column(
        ForeignKey("distinct_interests.id", ondelete="CASCADE"), index=True
    )
    since: Mapped[datetime]
    until: Mapped[datetime | None]


class Match(Base):
    """An article matched one distinct interest; readers reach it through their
    interests (``alerts.matching.service.reached_matches``)."""

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("article_id", "distinct_id"),
        # Digests read the matches of a reader's distinct interests in a window.
        Index("ix_matches_distinct_matched_at", "distinct_id", "matched_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    distinct_id: Mapped[int] = mapped_column(
        ForeignKey("distinct_interests.id", ondelete="CASCADE")
    )
    score: Mapped[float] = mapped_column(default=0.0)
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    matched_at: Mapped[datetime] = mapped_column(default=utcnow)


class Newsletter(Base):
    """A curated issue, or the template of a recurring one.

    ``sections`` holds ``{"title", "article_ids"}`` (picked by an editor) or
    ``{"title", "query", "regions", "days", "limit"}`` (filled from stored
    articles); when sending starts, every section is frozen to article ids so
    each recipient gets the same issue. A recurring template (``recurrence``
    set, no parent) spawns one child issue per occurrence.
    """

    __tablename__ = "newsletters"
    __table_args__ = (
        # Two clocks planning the same occurrence create one issue.
        UniqueConstraint("parent_id", "occurrence"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    intro_markdown: Mapped[str] = mapped_column(Text, default="")
    sections: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[NewsletterStatus] = mapped_column(
        _str_enum(NewsletterStatus), default=NewsletterStatus.DRAFT, index=True
    )
    scheduled_at: Mapped[datetime | None] = mapped_column(index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    recurrence: Mapped[str | None] = mapped_column(String(100))  # crontab, in ``timezone``
    recurrence_next_at: Mapped[datetime | None] = mapped_column(index=True)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletters.id", ondelete="SET NULL"), index=True
    )
    occurrence: Mapped[datetime | None]
    auto_query: Mapped[str | None] = mapped_column(String(1000))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class Delivery(Base):
    """The delivery ledger: one row per thing promised to one recipient.

    ``dedup_key`` names the promise (``alert:<subscriber>:<article>:email``,
    ``digest:<subscriber>:<window>``, ``newsletter:<newsletter>:<subscriber>``);
    its unique index makes a redelivered task a no-op, and the row's
    Message-ID is reused by every retry of the same promise.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        # The sweeper looks for rows stuck in a state for too long.
        Index("ix_deliveries_state_updated_at", "state", "updated_at"),
        # Throttling counts one subscriber's recent alerts.
        Index("ix_deliveries_subscriber_kind_created_at", "subscriber_id", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[DeliveryKind] = mapped_column(_str_enum(DeliveryKind))
    state: Mapped[DeliveryState] = mapped_column(
        _str_enum(DeliveryState), default=DeliveryState.QUEUED
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="SET NULL"))
    newsletter_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    message_id: Mapped[str] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Not to be sent before this (quiet hours, retry backoff).
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]


class User(Base):
    """An editor or admin who signs in to the web app."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[Role] = mapped_column(_str_enum(Role))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Sessions issued before this moment are dead.
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Two-factor sign-in (alerts.two_factor): the TOTP secret, encrypted with a key
    # derived from ALERTS_SECRET_KEY; set but unconfirmed while enrolment is open.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(300))
    totp_confirmed_at: Mapped[datetime | None]
    # The last time step whose code was accepted: that code and older ones are refused.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """A single-use way past the TOTP step; only a keyed hash of the code is kept."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class WebSession(Base):
    """A staff sign-in. The browser holds a random secret; only its SHA-256 is kept,
    so a copy of the database cannot sign anybody in."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    """A machine's credential for the JSON API; only a hash of the secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class RateEvent(Base):
    """One attempt counted by a rate limit (sign-ups per IP and per address).

    Kept in the database so every web process sees the same counts.
    """

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """A URL that receives signed POSTs for the events it subscribed to."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The webhook ledger: one event for one endpoint, retried until it lands."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[DeliveryState] = mapped_column(
        _str_enum(DeliveryState), default=DeliveryState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None]


class Suppression(Base):
    """Addresses that are never mailed, whatever their subscriber row says."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(_str_enum(SuppressionReason))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BounceEvent(Base):
    """One message that came back about a reader: a bounce, complaint or request.

    The soft-bounce score is read from these (a window of recent events), and the
    console shows them as the reader's bounce history.
    """

    __tablename__ = "bounce_events"
    __table_args__ = (Index("ix_bounce_events_email_received_at", "email", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(20))
    # True when the VERP token named the delivery: the report cannot be forged.
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    weight: Mapped[float] = mapped_column(default=0.0)
    action: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class LeaderLease(Base):
    """Who may act as the single clock; a lease that lapses passes to another."""

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]
