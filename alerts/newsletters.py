"""Editors' newsletters: compose, schedule, send once to a segment, recur.

An issue goes draft -> scheduled (or awaiting_approval) -> sending -> sent,
or is cancelled before sending starts. Sending starts with one guarded
UPDATE (scheduled -> sending), so a second clock, or a cancel racing the
start, cannot both win; then one ledger row per recipient is promised
(``newsletter.<issue>.<subscriber>``), which gives the crash guarantees of
every other mail. Editors write Markdown with a few ``{placeholders}``,
never templates: their text is data, rendered and sanitised, not code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import nh3
from apscheduler.triggers.cron import CronTrigger
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import audit
from alerts.audit import Actor
from alerts.compose import EntryCache
from alerts.config import Settings
from alerts.delivery.ledger import Promise, newsletter_key, promise
from alerts.delivery.message import InvalidAddressError, validate_address
from alerts.delivery.queueing import message_id_for
from alerts.delivery.render import MailRenderer, RenderedMail, postal_address
from alerts.errors import ConflictError, InvalidInputError
from alerts.i18n import DEFAULT_LANGUAGE, N_, ReaderLocale, format_day, translations
from alerts.links import link_versions, subscriber_links
from alerts.matching import QueryError, UnknownRegionError
from alerts.matching.service import preview_interest
from alerts.models import (
    Article,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Interest,
    Newsletter,
    NewsletterStatus,
    Subscriber,
    SubscriberStatus,
    User,
)
from alerts.regions import default_gazetteer
from alerts.schedule import UnknownTimezoneError, zone
from alerts.subscribers import parse_frequency, parse_language, validated_interest
from alerts.webhooks import emit

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
PLACEHOLDERS = frozenset({"email", "date", "preferences_url", "unsubscribe_url"})
# What editors' Markdown may turn into: text formatting and links, nothing active.
ALLOWED_TAGS = frozenset(
    {"p", "br", "strong", "em", "a", "ul", "ol", "li", "blockquote", "h2", "h3", "code", "hr"}
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
DEFAULT_SECTION_DAYS = 7
DEFAULT_SECTION_LIMIT = 10
MAX_SUBJECT = 300
# Previews and test mails carry no reader's signed link: every reader link in
# them points to this page (alerts.web.status), which says links are disabled.
LINKS_DISABLED_PATH = "/links-disabled"
# The address a preview shows where {email} stands: editors never see a reader's.
SAMPLE_ADDRESS = "reader@example.com"
TEST_SUBJECT_PREFIX = "[Test] "
# The audit action of a web test send; the hourly cap counts these entries.
TEST_AUDIT_ACTION = "newsletter.test"
TEST_SEND_WINDOW = timedelta(hours=1)
EDITORS_CHOICE = N_("Chosen by the editors.")
# Statuses from which an issue may still be changed or cancelled.
NOT_STARTED = (
    NewsletterStatus.DRAFT,
    NewsletterStatus.SCHEDULED,
    NewsletterStatus.AWAITING_APPROVAL,
)

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})


class NewsletterError(InvalidInputError):
    """An editor's input that cannot become (or change) an issue; says why."""


# --- editors' text ------------------------------------------------------------


def check_placeholders(text: str) -> None:
    unknown = sorted(set(PLACEHOLDER.findall(text)) - PLACEHOLDERS)
    if unknown:
        allowed = ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
        raise NewsletterError(f"unknown placeholder {{{unknown[0]}}}; use one of {allowed}")


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def intro_html(markdown_text: str, values: dict[str, str]) -> Markup:
    """Markdown to HTML with raw HTML disabled, then sanitised to an allow-list."""
    rendered = _markdown.render(fill_placeholders(markdown_text, values))
    clean = nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel="noopener noreferrer",
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 to the allow-list above


# --- composing an issue -------------------------------------------------------------


def validate_sections(
    session: Session, sections: Sequence[dict[str, Any]], settings: Settings
) -> list[dict[str, Any]]:
    """Sections as stored: picked article ids that exist, or a valid query."""
    cleaned: list[dict[str, Any]] = []
    for number, section in enumerate(sections, start=1):
        title = str(section.get("title") or "").strip()
        if not title:
            raise NewsletterError(f"section {number} needs a title")
        if "article_ids" in section:
            ids = [int(i) for i in section["article_ids"]]
            found = set(session.scalars(select(Article.id).where(Article.id.in_(ids))))
            missing = [i for i in ids if i not in found]
            if missing:
                raise NewsletterError(f"section {number}: no article {missing[0]}")
            cleaned.append({"title": title, "article_ids": ids})
            continue
        try:
            query, regions = validated_interest(
                section.get("query"), section.get("regions") or [], settings
            )
        except ValueError as error:
            raise NewsletterError(f"section {number}: {error}") from error
        cleaned.append(
            {
                "title": title,
                "query": query,
                "regions": regions,
                "days": int(section.get("days") or DEFAULT_SECTION_DAYS),
                "limit": int(section.get("limit") or DEFAULT_SECTION_LIMIT),
            }
        )
    return cleaned


def validate_audience(audience: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``{}`` is every confirmed subscriber; keys narrow it: regions (any of),
    words (an interest query mentions any), languages, frequencies."""
    cleaned: dict[str, Any] = {}
    if audience.get("regions"):
        try:
            _, cleaned["regions"] = validated_interest(None, audience["regions"], settings)
        except ValueError as error:
            raise NewsletterError(f"audience: {error}") from error
    if audience.get("words"):
        cleaned["words"] = sorted(
            {str(w).strip().lower() for w in audience["words"] if str(w).strip()}
        )
    try:
        # The readers' own rules: a segment of "fr" readers would never match anyone.
        if audience.get("languages"):
            cleaned["languages"] = sorted({parse_language(str(v)) for v in audience["languages"]})
        if audience.get("frequencies"):
            frequencies = {parse_frequency(str(v)).value for v in audience["frequencies"]}
            cleaned["frequencies"] = sorted(frequencies)
    except ValueError as error:
        raise NewsletterError(f"audience: {error}") from error
    return cleaned


def create_newsletter(
    session: Session,
    actor: Actor,
    *,
    subject: str,
    intro_markdown: str = "",
    preheader: str = "",
    sections: Sequence[dict[str, Any]] = (),
    audience: dict[str, Any] | None = None,
    settings: Settings,
    now: datetime,
) -> Newsletter:
    """Check and store a draft, audited; a console editor is recorded as its author."""
    subject = " ".join(subject.split())
    if not subject or len(subject) > MAX_SUBJECT:
        raise NewsletterError(f"a subject of 1 to {MAX_SUBJECT} characters is needed")
    check_placeholders(subject + preheader + intro_markdown)
    newsletter = Newsletter(
        subject=subject,
        preheader=" ".join(preheader.split()),
        intro_markdown=intro_markdown,
        sections=validate_sections(session, sections, settings),
        audience=validate_audience(audience or {}, settings),
        created_by_id=actor.id if isinstance(actor, User) else None,
        created_at=now,
    )
    session.add(newsletter)
    session.flush()
    detail = {"sections": len(newsletter.sections), "segment": sorted(newsletter.audience)}
    audit.record(session, actor, "newsletter.create", "newsletter", newsletter.id, detail, now)
    return newsletter


EDITABLE_FIELDS = frozenset({"subject", "preheader", "intro_markdown", "sections", "audience"})


def revise(session: Session, actor: Actor, newsletter_id: int, values: dict[str, Any]) -> list[str]:
    """Change an issue that has not started sending, audited; returns the changed fields.

    ``values`` are already validated (create_newsletter's checks). The UPDATE is
    guarded like ``schedule``: when sending starts first, the edit is refused.
    """
    unknown = set(values) - EDITABLE_FIELDS
    if unknown:
        raise NewsletterError(f"cannot edit {', '.join(sorted(unknown))}")
    newsletter = session.get_one(Newsletter, newsletter_id)
    changed = sorted(name for name, value in values.items() if getattr(newsletter, name) != value)
    updated = session.execute(
        update(Newsletter)
        .where(Newsletter.id == newsletter_id, Newsletter.status.in_(NOT_STARTED))
        .values(**values)
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(newsletter)
    if not updated:
        raise NewsletterError(
            f"issue {newsletter_id} is {newsletter.status.value}; too late to change"
        )
    if changed:
        fields = {"fields": changed}
        audit.record(session, actor, "newsletter.edit", "newsletter", newsletter_id, fields)
    return changed


def local_moment(when: str, timezone: str) -> datetime:
    """``YYYY-MM-DD HH:MM`` read in ``timezone``, as aware UTC."""
    try:
        tz = zone(timezone)
        naive = datetime.fromisoformat(when.strip())
    except UnknownTimezoneError as error:
        raise NewsletterError(str(error)) from error
    except ValueError as error:
        raise NewsletterError(f"{when!r} is not a date and time (YYYY-MM-DD HH:MM)") from error
    if naive.tzinfo is not None:
        raise NewsletterError("give a local time without an offset, and the time zone apart")
    return naive.replace(tzinfo=tz).astimezone(zone("UTC"))


def _schedule(
    session: Session, newsletter_id: int, at: datetime, timezone: str, now: datetime
) -> Newsletter:
    if at <= now:
        raise NewsletterError("that time has passed; pick a later one or send now")
    try:
        zone(timezone)
    except UnknownTimezoneError as error:
        raise NewsletterError(str(error)) from error
    changed = session.execute(
        update(Newsletter)
        .where(Newsletter.id == newsletter_id, Newsletter.status.in_(NOT_STARTED))
        .values(status=NewsletterStatus.SCHEDULED, scheduled_at=at, timezone=timezone)
    ).rowcount  # type: ignore[attr-defined]
    newsletter = session.get_one(Newsletter, newsletter_id)
    session.refresh(newsletter)
    if not changed:
        raise NewsletterError(
            f"issue {newsletter_id} is {newsletter.status.value}; too late to change"
        )
    return newsletter


def schedule(
    session: Session,
    newsletter_id: int,
    at: datetime,
    timezone: str,
    now: datetime,
    *,
    actor: Actor,
) -> Newsletter:
    """Schedule or reschedule an issue that has not started sending; audited."""
    newsletter = _schedule(session, newsletter_id, at, timezone, now)
    audit.record(
        session,
        actor,
        "newsletter.schedule",
        "newsletter",
        newsletter_id,
        {"at": at.isoformat(), "timezone": timezone},
        now,
    )
    return newsletter


def send_now(session: Session, newsletter_id: int, now: datetime, *, actor: Actor) -> Newsletter:
    """Schedule for this moment: the next clock tick (or the caller) starts it."""
    newsletter = _schedule(session, newsletter_id, now + timedelta(microseconds=1), "UTC", now)
    audit.record(session, actor, "newsletter.send_now", "newsletter", newsletter_id, now=now)
    return newsletter


def cancel(session: Session, newsletter_id: int, *, actor: Actor) -> bool:
    """Cancel an issue that has not started sending; False (and no audit) when too late."""
    cancelled = bool(
        session.execute(
            update(Newsletter)
            .where(Newsletter.id == newsletter_id, Newsletter.status.in_(NOT_STARTED))
            .values(status=NewsletterStatus.CANCELLED)
        ).rowcount  # type: ignore[attr-defined]
    )
    if cancelled:
        audit.record(session, actor, "newsletter.cancel", "newsletter", newsletter_id)
    return cancelled


def approve(session: Session, newsletter_id: int, *, actor: Actor) -> bool:
    """Let a held recurring issue go at its time (or at once if that has passed)."""
    approved = bool(
        session.execute(
            update(Newsletter)
            .where(
                Newsletter.id == newsletter_id,
                Newsletter.status == NewsletterStatus.AWAITING_APPROVAL,
            )
            .values(status=NewsletterStatus.SCHEDULED)
        ).rowcount  # type: ignore[attr-defined]
    )
    if approved:
        audit.record(session, actor, "newsletter.approve", "newsletter", newsletter_id)
    return approved


# --- audience and sending -----------------------------------------------------------


def audience_members(session: Session, audience: dict[str, Any]) -> list[tuple[int, str]]:
    """(id, email) of the confirmed subscribers in the segment."""
    return [(m.id, m.email) for m in _audience_rows(session, audience)]


@dataclass(frozen=True)
class SampleReader:
    """A kind of reader in a segment, for previews: what changes the mail, no address."""

    language: str
    timezone: str
    readers: int


def sample_readers(session: Session, audience: dict[str, Any]) -> list[SampleReader]:
    """The segment's readers grouped by language and time zone, most common first.

    An issue differs between readers only in these (and in the address and
    links, which previews never show), so one sample of each is every preview.
    """
    counts: dict[tuple[str, str], int] = {}
    for member in _audience_rows(session, audience):
        locale = ReaderLocale.of(member.language, member.timezone)
        key = (locale.language, locale.timezone)
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [SampleReader(language, timezone, n) for (language, timezone), n in ranked]


def _audience_rows(session: Session, audience: dict[str, Any]) -> list[Any]:
    """Rows (id, email, language, timezone) of the confirmed subscribers in the segment."""
    query = select(Subscriber.id, Subscriber.email, Subscriber.language, Subscriber.timezone).where(
        Subscriber.status == SubscriberStatus.CONFIRMED
    )
    if audience.get("languages"):
        query = query.where(Subscriber.language.in_(audience["languages"]))
    if audience.get("frequencies"):
        query = query.where(Subscriber.frequency.in_(audience["frequencies"]))
    members = session.execute(query.order_by(Subscriber.id)).all()
    if not audience.get("regions") and not audience.get("words"):
        return list(members)
    wanted_regions = set(audience.get("regions", []))
    words = audience.get("words", [])
    region_ids = _with_descendants(wanted_regions)
    matching: set[int] = set()
    for subscriber_id, query_text, regions in session.execute(
        select(Interest.subscriber_id, Interest.query, Interest.regions)
    ):
        if region_ids & set(regions or []) or (
            query_text and any(word in query_text.lower() for word in words)
        ):
            matching.add(subscriber_id)
    return [m for m in members if m.id in matching]


def _with_descendants(region_ids: set[str]) -> set[str]:
    """A segment for a region includes readers of places inside it."""
    if not region_ids:
        return set()
    gz = default_gazetteer()
    return {r for r in gz.regions if gz.ancestors(r) & region_ids} | region_ids


def freeze_sections(
    session: Session, newsletter: Newsletter, settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """Turn query sections into article ids, once, so every recipient gets the same."""
    frozen: list[dict[str, Any]] = []
    for section in newsletter.sections:
        if "article_ids" in section:
            frozen.append(section)
            continue
        try:
            hits = preview_interest(
                session,
                section.get("query"),
                section.get("regions", []),
                since=now - timedelta(days=section.get("days", DEFAULT_SECTION_DAYS)),
                gazetteer=default_gazetteer(),
                settings=settings,
                limit=section.get("limit", DEFAULT_SECTION_LIMIT),
            )
        except (QueryError, UnknownRegionError):
            hits = []  # validated when saved; a section that no longer parses is left empty
        frozen.append({"title": section["title"], "article_ids": [hit.article_id for hit in hits]})
    return frozen


def start_due_issues(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Start every scheduled issue whose time has come; returns new ledger ids."""
    due = session.scalars(
        select(Newsletter.id).where(
            Newsletter.status == NewsletterStatus.SCHEDULED, Newsletter.scheduled_at <= now
        )
    ).all()
    delivery_ids: list[int] = []
    for newsletter_id in due:
        started = session.execute(
            update(Newsletter)
            .where(Newsletter.id == newsletter_id, Newsletter.status == NewsletterStatus.SCHEDULED)
            .values(status=NewsletterStatus.SENDING)
        ).rowcount  # type: ignore[attr-defined]
        if not started:
            continue  # another clock, or a cancel, got there first
        newsletter = session.get_one(Newsletter, newsletter_id)
        session.refresh(newsletter)
        newsletter.sections = freeze_sections(session, newsletter, settings, now)
        promises = [
            Promise(
                dedup_key=newsletter_key(newsletter_id, subscriber_id),
                kind=DeliveryKind.NEWSLETTER,
                recipient=email,
                message_id=message_id_for(settings, newsletter_key(newsletter_id, subscriber_id)),
                due_at=now,
                subscriber_id=subscriber_id,
                newsletter_id=newsletter_id,
            )
            for subscriber_id, email in audience_members(session, newsletter.audience)
        ]
        delivery_ids.extend(promise(session, promises, now))
    return delivery_ids


def progress(session: Session, newsletter_id: int) -> dict[str, int]:
    """Recipients by ledger state: what editors watch while an issue goes out."""
    return progress_by_issue(session, [newsletter_id])[newsletter_id]


def progress_by_issue(session: Session, newsletter_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """``progress`` of many issues in one grouped query (the issues list), not one per row."""
    counts = {
        newsletter_id: {state.value: 0 for state in DeliveryState}
        for newsletter_id in newsletter_ids
    }
    if not counts:
        return counts
    for newsletter_id, state, count in session.execute(
        select(Delivery.newsletter_id, Delivery.state, func.count(Delivery.id))
        .where(Delivery.newsletter_id.in_(list(counts)), Delivery.kind == DeliveryKind.NEWSLETTER)
        .group_by(Delivery.newsletter_id, Delivery.state)
    ):
        if newsletter_id is not None:  # the IN above excludes NULL; this tells mypy
            counts[newsletter_id][state.value] = count
    return counts


def finish_sent_issues(session: Session, now: datetime) -> None:
    """An issue whose every recipient is settled is sent."""
    for newsletter in session.scalars(
        select(Newsletter).where(Newsletter.status == NewsletterStatus.SENDING)
    ):
        counts = progress(session, newsletter.id)
        if counts["queued"] == 0 and counts["sending"] == 0:
            newsletter.status = NewsletterStatus.SENT
            newsletter.sent_at = now
            emit(session, "newsletter.sent", {"newsletter_id": newsletter.id, **counts}, now)


# --- recurring ----------------------------------------------------------------------


def next_occurrence(recurrence: str, timezone: str, after: datetime) -> datetime:
    """The next time the crontab fires after ``after``, in the zone, DST included."""
    try:
        trigger = CronTrigger.from_crontab(recurrence, timezone=zone(timezone))
    except ValueError as error:
        raise NewsletterError(f"schedule {recurrence!r}: {error}") from error
    fire = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    if fire is None:
        raise NewsletterError(f"schedule {recurrence!r} never fires")
    return fire.astimezone(zone("UTC"))


def upcoming(newsletter: Newsletter, count: int, now: datetime) -> list[datetime]:
    """The next few occurrences of a recurring template, for editors to check the crontab."""
    if not newsletter.recurrence:
        return []
    moments: list[datetime] = []
    after = now
    for _ in range(count):
        after = next_occurrence(newsletter.recurrence, newsletter.timezone, after)
        moments.append(after)
    return moments


class NotRecurrableError(NewsletterError, ConflictError):
    """Only a draft that is not itself an occurrence can become a recurring template."""


def make_recurring(
    session: Session,
    newsletter_id: int,
    recurrence: str,
    timezone: str,
    *,
    approval_required: bool,
    now: datetime,
    actor: Actor,
) -> Newsletter:
    """Make a draft the template of a recurring issue; audited.

    A sent or scheduled issue (or an occurrence of another template) would
    spawn copies of something already out: NotRecurrableError.
    """
    newsletter = session.get_one(Newsletter, newsletter_id)
    if newsletter.parent_id is not None or newsletter.status is not NewsletterStatus.DRAFT:
        raise NotRecurrableError(
            f"issue {newsletter_id} is {newsletter.status.value}; only a draft that is not "
            "itself an occurrence can become recurring"
        )
    try:
        next_at = next_occurrence(recurrence, timezone, now)
    except UnknownTimezoneError as error:
        raise NewsletterError(str(error)) from error
    newsletter.recurrence = recurrence
    newsletter.timezone = timezone
    newsletter.approval_required = approval_required
    newsletter.recurrence_next_at = next_at
    audit.record(
        session,
        actor,
        "newsletter.recur",
        "newsletter",
        newsletter_id,
        {"cron": recurrence, "timezone": timezone, "approval": approval_required},
        now,
    )
    return newsletter


def plan_recurring(session: Session, now: datetime) -> list[int]:
    """Spawn the issue of every recurring template whose occurrence has come."""
    created: list[int] = []
    templates = session.scalars(
        select(Newsletter).where(
            Newsletter.recurrence.is_not(None),
            Newsletter.parent_id.is_(None),
            Newsletter.status != NewsletterStatus.CANCELLED,
            Newsletter.recurrence_next_at <= now,
        )
    ).all()
    for template in templates:
        occurrence, recurrence = template.recurrence_next_at, template.recurrence
        if occurrence is None or recurrence is None:
            continue  # excluded by the query; narrows the types
        issue = Newsletter(
            subject=template.subject,
            preheader=template.preheader,
            intro_markdown=template.intro_markdown,
            sections=template.sections,
            audience=template.audience,
            timezone=template.timezone,
            created_by_id=template.created_by_id,
            created_at=now,
            parent_id=template.id,
            occurrence=occurrence,
            scheduled_at=occurrence,
            status=(
                NewsletterStatus.AWAITING_APPROVAL
                if template.approval_required
                else NewsletterStatus.SCHEDULED
            ),
        )
        try:
            with session.begin_nested():
                session.add(issue)
        except IntegrityError:
            continue  # another clock planned this occurrence
        created.append(issue.id)
        template.recurrence_next_at = next_occurrence(recurrence, template.timezone, now)
    return created


# --- what readers get -----------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Who an issue is rendered for: a subscriber, or a test address.

    ``timezone`` None means the issue's own zone (a test address that is
    nobody's subscription has no zone of its own).
    """

    subscriber_id: int
    email: str
    language: str = DEFAULT_LANGUAGE
    timezone: str | None = None
    token_version: int = 0  # the subscriber's, signed into their links


def placeholder_links(settings: Settings) -> dict[str, str]:
    """The reader links of previews and test mails: a page saying links are disabled.

    A preview is seen by an editor and a test goes to any address typed in, so
    neither may carry a reader's signed link, which would let its holder
    change or erase that reader's subscription.
    """
    target = f"{settings.base_url.rstrip('/')}{LINKS_DISABLED_PATH}"
    return {"unsubscribe": target, "preferences": target}


def _reader(
    subscriber_id: int, email: str, locale: ReaderLocale | None, token_version: int = 0
) -> Reader:
    if locale is None:
        return Reader(subscriber_id, email, token_version=token_version)
    return Reader(subscriber_id, email, locale.language, locale.timezone, token_version)


def issue_context(
    session: Session,
    newsletter: Newsletter,
    reader: Reader,
    settings: Settings,
    now: datetime,
    entries: EntryCache | None = None,
    articles: dict[int, Article] | None = None,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The template context of one issue for one reader; preview and send share it.

    ``links`` replaces the reader's signed links (previews and tests pass
    ``placeholder_links``); None gives the reader's own.
    """
    entries = entries or EntryCache(default_gazetteer())
    sections = newsletter.sections
    if articles is None:
        ids = {i for s in sections for i in s.get("article_ids", [])}
        articles = {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(ids)))}
    if links is None:
        links = subscriber_links(
            settings,
            reader.subscriber_id,
            reader.language,
            version=reader.token_version,
            issued_at=now,
        )
    timezone = reader.timezone or newsletter.timezone
    why = translations(reader.language).gettext(EDITORS_CHOICE)
    values = {
        "email": reader.email,
        "date": format_day(now, reader.language, timezone),
        "preferences_url": links["preferences"],
        "unsubscribe_url": links["unsubscribe"],
    }
    groups = []
    for section in sections:
        found = [articles[i] for i in section.get("article_ids", []) if i in articles]
        shown = [
            _editors_entry(
                entries.get(article, [], language=reader.language, timezone=timezone), why
            )
            for article in found
        ]
        if shown:
            groups.append({"title": section["title"], "entries": shown})
    return {
        "language": reader.language,
        "subscriber": {"email": reader.email},
        "subject": fill_placeholders(newsletter.subject, values),
        "preheader": fill_placeholders(newsletter.preheader, values),
        "intro_html": intro_html(newsletter.intro_markdown, values),
        "intro_text": fill_placeholders(newsletter.intro_markdown, values),
        "groups": groups,
        "links": links,
    }


def _editors_entry(entry: dict[str, Any], why: str) -> dict[str, Any]:
    """An entry picked by editors: no highlights, and a why of its own (hence its own key)."""
    return dict(entry, why=why, key=f"{entry['key']}:editors")


def _recipient_locales(
    session: Session, deliveries: Sequence[Delivery]
) -> tuple[dict[int, ReaderLocale], dict[str, ReaderLocale]]:
    """Readers' languages and zones by subscriber id, and by address for test mail
    (a test sent to a subscriber's address shows what that subscriber gets)."""
    ids = {d.subscriber_id for d in deliveries if d.subscriber_id is not None}
    test_addresses = {d.recipient for d in deliveries if d.subscriber_id is None}
    if not ids and not test_addresses:
        return {}, {}
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.language, Subscriber.timezone).where(
            or_(Subscriber.id.in_(ids), Subscriber.email.in_(test_addresses))
        )
    )
    by_id: dict[int, ReaderLocale] = {}
    by_address: dict[str, ReaderLocale] = {}
    for row in rows:
        by_id[row.id] = by_address[row.email] = ReaderLocale.of(row.language, row.timezone)
    return by_id, by_address


def compose_newsletters(
    session: Session, deliveries: Sequence[Delivery], settings: Settings, now: datetime
) -> dict[int, tuple[str, dict[str, Any]]]:
    """Contexts of newsletter and test deliveries, the issue loaded once per batch."""
    issue_ids = {d.newsletter_id for d in deliveries if d.newsletter_id is not None}
    issues = {
        n.id: n for n in session.scalars(select(Newsletter).where(Newsletter.id.in_(issue_ids)))
    }
    ids = {i for n in issues.values() for s in n.sections for i in s.get("article_ids", [])}
    articles = {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(ids)))}
    by_id, by_address = _recipient_locales(session, deliveries)
    versions = link_versions(session, (d.subscriber_id for d in deliveries))
    entries = EntryCache(default_gazetteer())
    contexts: dict[int, tuple[str, dict[str, Any]]] = {}
    for delivery in deliveries:
        issue = issues.get(delivery.newsletter_id or -1)
        if issue is None:
            continue
        locale = (
            by_id.get(delivery.subscriber_id)
            if delivery.subscriber_id is not None
            else by_address.get(delivery.recipient)
        )
        reader = _reader(
            delivery.subscriber_id or 0,
            delivery.recipient,
            locale,
            versions.get(delivery.subscriber_id or 0, 0),
        )
        if delivery.kind is DeliveryKind.TEST:
            context = issue_context(
                session,
                issue,
                reader,
                settings,
                now,
                entries,
                articles,
                placeholder_links(settings),
            )
            context["subject"] = TEST_SUBJECT_PREFIX + context["subject"]
        else:
            context = issue_context(session, issue, reader, settings, now, entries, articles)
        contexts[delivery.id] = ("newsletter", context)
    return contexts


def remaining_test_sends(
    session: Session, editor_id: int, settings: Settings, now: datetime
) -> int:
    """Test mails this editor may still send in the current hour.

    Counted from the audit log, which records every test send with its
    number of recipients: the log is already the record of who sent what.
    """
    details = session.scalars(
        select(AuditEntry.detail).where(
            AuditEntry.action == TEST_AUDIT_ACTION,
            AuditEntry.actor_id == editor_id,
            AuditEntry.at > now - TEST_SEND_WINDOW,
        )
    )
    used = sum(int(detail.get("recipients", 0)) for detail in details)
    return max(settings.test_sends_per_hour - used, 0)


def send_test(
    session: Session,
    actor: Actor,
    newsletter_id: int,
    addresses: Sequence[str],
    settings: Settings,
    now: datetime,
) -> list[int]:
    """Promise one test mail per address (each call a new test), audited; ledger ids.

    A test is marked "[Test]" and carries placeholder links (see
    ``compose_newsletters``). Sent by a console editor, it counts against
    ``ALERTS_TEST_SENDS_PER_HOUR``; the operator's CLI has no cap.
    """
    if isinstance(actor, User):
        left = remaining_test_sends(session, actor.id, settings, now)
        if len(addresses) > left:
            raise NewsletterError(
                f"test sends are limited to {settings.test_sends_per_hour} an hour per editor; "
                f"{left} left now, {len(addresses)} asked for. Try again later."
            )
    promises = []
    for address in addresses:
        try:
            email = validate_address(address.strip()).lower()
        except InvalidAddressError as error:
            raise NewsletterError(str(error)) from error
        key = f"test.{newsletter_id}.{email}.{now.timestamp():.6f}"
        promises.append(
            Promise(
                dedup_key=key,
                kind=DeliveryKind.TEST,
                recipient=email,
                message_id=message_id_for(settings, key),
                due_at=now,
                newsletter_id=newsletter_id,
            )
        )
    ids = promise(session, promises, now)
    # The hourly cap counts these entries (remaining_test_sends).
    recipients = {"recipients": len(ids)}
    audit.record(session, actor, TEST_AUDIT_ACTION, "newsletter", newsletter_id, recipients, now)
    return ids


def preview(
    session: Session,
    newsletter_id: int,
    email: str,
    settings: Settings,
    now: datetime,
    renderer: MailRenderer,
) -> RenderedMail:
    """The issue as ``email`` would get it if it went out now, links disabled.

    The operator's preview (``alerts newsletters preview --subscriber``): in the
    reader's language and time zone, with their address, but placeholder
    links in place of their signed ones (see ``placeholder_links``).
    """
    newsletter = _existing(session, newsletter_id)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))
    reader = _reader(
        subscriber.id if subscriber else 0,
        email.strip().lower(),
        ReaderLocale.of(subscriber.language, subscriber.timezone) if subscriber else None,
        subscriber.token_version if subscriber else 0,
    )
    return _preview(session, newsletter, reader, settings, now, renderer)


def preview_sample(
    session: Session,
    newsletter_id: int,
    locale: ReaderLocale | None,
    settings: Settings,
    now: datetime,
    renderer: MailRenderer,
) -> RenderedMail:
    """The issue as a reader of ``locale`` would get it, for editors: no reader named.

    ``{email}`` shows ``SAMPLE_ADDRESS`` and every reader link is a placeholder,
    so an editor's preview holds neither an address nor a usable token.
    """
    newsletter = _existing(session, newsletter_id)
    reader = _reader(0, SAMPLE_ADDRESS, locale)
    return _preview(session, newsletter, reader, settings, now, renderer)


def _existing(session: Session, newsletter_id: int) -> Newsletter:
    newsletter = session.get(Newsletter, newsletter_id)
    if newsletter is None:
        raise NewsletterError(f"no newsletter {newsletter_id}")
    return newsletter


def _preview(
    session: Session,
    newsletter: Newsletter,
    reader: Reader,
    settings: Settings,
    now: datetime,
    renderer: MailRenderer,
) -> RenderedMail:
    """Query sections resolved as the start of sending would resolve them; the rest
    is the same context and templates the send path uses, links disabled."""
    frozen = Newsletter(
        subject=newsletter.subject,
        preheader=newsletter.preheader,
        intro_markdown=newsletter.intro_markdown,
        sections=freeze_sections(session, newsletter, settings, now),
        timezone=newsletter.timezone,
    )
    context = issue_context(
        session, frozen, reader, settings, now, links=placeholder_links(settings)
    )
    context["postal_address"] = postal_address(settings)
    return renderer.render("newsletter", context, reader.language)
