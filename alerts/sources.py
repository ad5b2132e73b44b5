"""Editors' sources: add, edit, pause, resume and poll feeds and pages.

The clock polls a source when its ``next_poll_at`` has come, so every
change that should make a poll happen soon (a new URL, a resume, "poll
now") only moves that time; nothing here fetches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import audit
from alerts.audit import Actor
from alerts.config import Settings, get_settings
from alerts.errors import InvalidInputError
from alerts.models import Article, Source
from alerts.netguard import Outbound, OutboundError

MIN_POLL_MINUTES = 1
MAX_POLL_MINUTES = 24 * 60
MAX_NAME = 200
MAX_URL = 2000
MAX_TAGS = 20
MAX_TAG = 100
URL_SCHEMES = frozenset({"http", "https"})


class SourceInputError(InvalidInputError):
    """An editor's source settings that cannot be saved; ``field`` says which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SourceForm:
    """What an editor types (or a client sends) for a source, before validation.

    ``tags`` is the form's comma-separated text, or a list from the API or the
    command line; an empty ``poll_minutes`` means the default.
    """

    name: str
    url: str
    poll_minutes: str | int
    tags: str | Sequence[str]


@dataclass(frozen=True)
class SourceSettings:
    name: str
    url: str
    poll_minutes: int
    tags: list[str]


def parse_tags(text: str | Sequence[str]) -> list[str]:
    """Split "News, Abkhazia" (or take a list) into tags, in order, without repeats."""
    tags: list[str] = []
    for raw in text.split(",") if isinstance(text, str) else text:
        tag = " ".join(raw.split())
        if tag and tag.casefold() not in {t.casefold() for t in tags}:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise SourceInputError("tags", f"at most {MAX_TAGS} tags")
    if any(len(tag) > MAX_TAG for tag in tags):
        raise SourceInputError("tags", f"a tag has at most {MAX_TAG} characters")
    return tags


def validate_url(url: str, outbound: Outbound | None = None) -> str:
    """A source address that polls will be allowed to fetch.

    Refuses hosts on the server's own network (loopback, private, metadata...)
    through the same guard that every fetch passes; ``outbound`` defaults to
    the guard the settings describe.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        raise SourceInputError("url", "give an http:// or https:// address with a host name")
    if len(url) > MAX_URL:
        raise SourceInputError("url", f"the address is longer than {MAX_URL} characters")
    guard = outbound or Outbound.from_settings(get_settings())
    try:
        guard.check_url(url)
    except OutboundError as error:
        raise SourceInputError("url", str(error)) from error
    return url


def validate_interval(minutes: str | int) -> int:
    try:
        value = int(str(minutes).strip())
    except ValueError:
        value = 0
    if not MIN_POLL_MINUTES <= value <= MAX_POLL_MINUTES:
        raise SourceInputError(
            "poll_minutes",
            f"poll every {MIN_POLL_MINUTES} to {MAX_POLL_MINUTES} minutes (a whole number)",
        )
    return value


def validate(
    form: SourceForm, default_minutes: int, outbound: Outbound | None = None
) -> SourceSettings:
    """Every field checked; the first problem is raised with the field it belongs to."""
    url = validate_url(form.url, outbound)
    name = " ".join(form.name.split()) or url
    if len(name) > MAX_NAME:
        raise SourceInputError("name", f"a name has at most {MAX_NAME} characters")
    minutes = validate_interval(form.poll_minutes or default_minutes)
    return SourceSettings(name, url, minutes, parse_tags(form.tags))


def _refuse_taken_url(session: Session, url: str, source_id: int | None = None) -> None:
    query = select(Source.id).where(Source.url == url)
    if source_id is not None:
        query = query.where(Source.id != source_id)
    existing = session.scalar(query)
    if existing is not None:
        raise SourceInputError("url", f"source {existing} already polls this address")


def add_source(session: Session, wanted: SourceSettings, now: datetime) -> Source:
    """A new active source, polled at the next clock tick."""
    _refuse_taken_url(session, wanted.url)
    source = Source(
        name=wanted.name,
        url=wanted.url,
        poll_minutes=wanted.poll_minutes,
        default_tags=wanted.tags,
        active=True,
        next_poll_at=now,
        created_at=now,
    )
    session.add(source)
    session.flush()
    return source


def edit_source(
    session: Session, source: Source, wanted: SourceSettings, now: datetime
) -> list[str]:
    """Apply changes; returns the names of the fields that changed.

    A new URL is another document: the old validators would make the server
    answer 304 for a page we never read, so they go, and it is polled soon.
    """
    changed: list[str] = []
    if wanted.url != source.url:
        _refuse_taken_url(session, wanted.url, source.id)
        source.url = wanted.url
        source.etag = None
        source.last_modified = None
        source.next_poll_at = now
        changed.append("url")
    if wanted.name != source.name:
        source.name = wanted.name
        changed.append("name")
    if wanted.poll_minutes != source.poll_minutes:
        source.poll_minutes = wanted.poll_minutes
        changed.append("poll_minutes")
    if wanted.tags != list(source.default_tags or []):
        source.default_tags = wanted.tags
        changed.append("default_tags")
    session.flush()
    return changed


def create_source(
    session: Session,
    actor: Actor,
    form: SourceForm,
    settings: Settings,
    now: datetime,
    *,
    active: bool = True,
    via: str | None = None,
    outbound: Outbound | None = None,
) -> Source:
    """Validate and add a source, and audit it: the one way in for every edge.

    SourceInputError names the field at fault (a host on our own network, an
    interval outside the limits, too many tags, an address already polled).
    """
    wanted = validate(form, settings.source_default_poll_minutes, outbound)
    source = add_source(session, wanted, now)
    if not active:
        set_active(source, False, now)
    audit.record(
        session,
        actor,
        "source.add",
        "source",
        source.id,
        {"poll_minutes": source.poll_minutes, "tags": source.default_tags},
        now,
        via=via,
    )
    return source


def update_source(
    session: Session,
    actor: Actor,
    source: Source,
    form: SourceForm,
    settings: Settings,
    now: datetime,
    *,
    active: bool | None = None,
    via: str | None = None,
    outbound: Outbound | None = None,
) -> list[str]:
    """Validate and apply new settings (and pause or resume); audited when anything changed.

    Returns the names of the fields that changed.
    """
    wanted = validate(form, settings.source_default_poll_minutes, outbound)
    changed = edit_source(session, source, wanted, now)
    if active is not None and set_active(source, active, now):
        changed.append("active")
    if changed:
        audit.record(
            session, actor, "source.edit", "source", source.id, {"fields": changed}, now, via=via
        )
    return changed


def current_form(source: Source) -> SourceForm:
    """A source's stored settings as a form, for partial updates to start from."""
    return SourceForm(source.name, source.url, source.poll_minutes, list(source.default_tags or []))


def set_active(source: Source, active: bool, now: datetime) -> bool:
    """Pause or resume; a resumed source is polled at the next tick. False if unchanged."""
    if source.active == active:
        return False
    source.active = active
    if active:
        source.next_poll_at = now
    return True


def poll_now(source: Source, now: datetime) -> None:
    """Make the clock pick the source up at its next tick (it queues the poll)."""
    source.next_poll_at = now


SourceAction = Literal["poll", "pause", "resume"]


def act_on_source(
    session: Session, actor: Actor, source: Source, action: SourceAction, now: datetime
) -> bool:
    """Poll now, pause or resume, audited when it changed anything; False if not."""
    if action == "poll":
        poll_now(source, now)
        changed = True
    else:
        changed = set_active(source, action == "resume", now)
    if changed:
        audit.record(session, actor, f"source.{action}", "source", source.id, now=now)
    return changed


def delete_source(
    session: Session, actor: Actor, source: Source, *, via: str | None = None
) -> None:
    """Remove a source, audited; its stored articles stay, with no source (SET NULL)."""
    source_id = source.id
    session.delete(source)
    session.flush()
    audit.record(session, actor, "source.delete", "source", source_id, via=via)


def article_counts(session: Session) -> dict[int, int]:
    """Stored articles per source id, in one grouped query."""
    counts: dict[int, int] = {}
    for source_id, count in session.execute(
        select(Article.source_id, func.count(Article.id))
        .where(Article.source_id.is_not(None))
        .group_by(Article.source_id)
    ):
        if source_id is not None:
            counts[source_id] = count
    return counts
