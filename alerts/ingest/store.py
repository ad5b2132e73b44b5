"""Storing parsed articles: deduplicate, link near-duplicates, account for every entry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts.db import utcnow
from alerts.ingest.formats import EntryError, ParsedArticle, ParseResult
from alerts.ingest.text import content_fingerprint
from alerts.jobs import QueuedJob
from alerts.models import Article, MatchState, Source

# Query parameters that only say where a reader clicked from: the same story
# with and without them is one article.
TRACKING_PARAMETERS = frozenset({"fbclid", "gclid", "mc_cid", "mc_eid", "ref", "yclid"})
TRACKING_PREFIXES = ("utm_",)
# Bound parameters per dedup lookup; SQLite allows 32,766, three keys per entry.
DEDUP_LOOKUP_BATCH = 500


@dataclass
class IngestReport:
    """What happened to every entry of one or more sources; each counted once."""

    new: int = 0
    duplicate: int = 0
    rejected: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    new_article_ids: list[int] = field(default_factory=list)
    # Duplicates of stored articles that are still waiting to be matched
    # (their match task may have been lost): queued again.
    requeued_article_ids: list[int] = field(default_factory=list)
    # The match jobs queued for this report's articles, once the session commits.
    match_jobs: list[QueuedJob] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        self.new += other.new
        self.duplicate += other.duplicate
        self.rejected += other.rejected
        self.errors.extend(other.errors)
        self.new_article_ids.extend(other.new_article_ids)
        self.requeued_article_ids.extend(other.requeued_article_ids)
        self.match_jobs.extend(other.match_jobs)

    def unqueued_article_ids(self) -> list[int]:
        """Articles stored but whose match job the broker refused after commit;
        the clock's match sweeper queues them again."""
        return [
            article_id
            for job in self.match_jobs
            if job.error is not None
            for article_id in job.arguments["article_ids"]
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "errors": self.errors,
        }


def normalise_url(url: str) -> str:
    """The URL with case, fragment, default ports and tracking parameters folded away."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.port and not (
        (parts.scheme == "http" and parts.port == 80)
        or (parts.scheme == "https" and parts.port == 443)
    ):
        host = f"{host}:{parts.port}"
    query = urlencode(
        sorted(
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key.lower() not in TRACKING_PARAMETERS
            and not key.lower().startswith(TRACKING_PREFIXES)
        )
    )
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), host, path, query, ""))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Keys:
    url_key: str | None
    guid_key: str | None
    fingerprint: str
    title_key: str


def _keys(article: ParsedArticle, scope: str) -> _Keys:
    return _Keys(
        url_key=_digest(normalise_url(article.url)) if article.url else None,
        # A guid is only unique within the feed that issued it.
        guid_key=_digest(f"{scope}\0{article.guid}") if article.guid else None,
        fingerprint=content_fingerprint(article.title, article.body),
        title_key=content_fingerprint(article.title, ""),
    )


def _known_keys(session: Session, keys: list[_Keys]) -> dict[str, tuple[int, bool]]:
    """Every url_key, guid_key and fingerprint among ``keys`` already stored,
    with the id of the article holding it and whether it still awaits matching."""
    known: dict[str, tuple[int, bool]] = {}
    for start in range(0, len(keys), DEDUP_LOOKUP_BATCH):
        batch = keys[start : start + DEDUP_LOOKUP_BATCH]
        urls = [k.url_key for k in batch if k.url_key]
        guids = [k.guid_key for k in batch if k.guid_key]
        prints = [k.fingerprint for k in batch]
        rows = session.execute(
            select(
                Article.id,
                Article.match_state,
                Article.url_key,
                Article.guid_key,
                Article.fingerprint,
            ).where(
                or_(
                    Article.url_key.in_(urls),
                    Article.guid_key.in_(guids),
                    Article.fingerprint.in_(prints),
                )
            )
        )
        for article_id, state, *values in rows:
            pending = state == MatchState.PENDING
            known.update((value, (article_id, pending)) for value in values if value)
    return known


def _story_heads(session: Session, title_keys: set[str]) -> dict[str, int]:
    """The first stored article of each title: near-duplicates link to it."""
    heads: dict[str, int] = {}
    if not title_keys:
        return heads
    rows = session.execute(
        select(Article.title_key, Article.id)
        .where(Article.title_key.in_(title_keys), Article.duplicate_of_id.is_(None))
        .order_by(Article.id)
    )
    for title_key, article_id in rows:
        heads.setdefault(title_key, article_id)
    return heads


def store_articles(
    session: Session,
    parsed: ParseResult,
    *,
    source: Source | None = None,
    location: str = "",
    now: datetime | None = None,
) -> IngestReport:
    """Add the new articles of one parsed document; flush, never commit.

    Each new article is written as pending matching, queued ``now``; the caller
    queues the match job. Which entries are new is decided in document order;
    they are then inserted sorted by fingerprint, so concurrent ingests of
    overlapping documents take their unique-key locks in one order and never
    wait on each other in a cycle (a deadlock on PostgreSQL).
    """
    now = now or utcnow()
    report = IngestReport(
        rejected=len(parsed.errors),
        errors=[_error_row(error, location) for error in parsed.errors],
    )
    candidates = [
        (article, _keys(article, _guid_scope(article, parsed, source, location)))
        for article in parsed.articles
    ]
    known = _known_keys(session, [keys for _, keys in candidates])
    heads = _story_heads(session, {keys.title_key for _, keys in candidates})

    fresh: list[tuple[ParsedArticle, _Keys]] = []
    seen: set[str] = set()  # identities of this document's new entries
    requeue: set[int] = set()
    for article, keys in candidates:
        identity = {key for key in (keys.url_key, keys.guid_key, keys.fingerprint) if key}
        stored = [known[key] for key in identity if key in known]
        if stored or identity & seen:
            report.duplicate += 1
            requeue.update(article_id for article_id, pending in stored if pending)
            continue
        seen.update(identity)
        fresh.append((article, keys))

    rows: dict[str, Article] = {}
    for article, keys in sorted(fresh, key=lambda candidate: candidate[1].fingerprint):
        row = _article_row(article, keys, source, heads.get(keys.title_key), now)
        if _insert(session, row):
            rows[keys.fingerprint] = row
        else:
            report.duplicate += 1
    # Near-duplicates within this document point at its first (in document
    # order) of their title, unless an earlier stored story already leads.
    first_of_title: dict[str, Article] = {}
    for _, keys in fresh:
        stored_row = rows.get(keys.fingerprint)
        if stored_row is None:
            continue
        report.new += 1
        report.new_article_ids.append(stored_row.id)
        if keys.title_key in heads:
            continue
        first = first_of_title.setdefault(keys.title_key, stored_row)
        if first is not stored_row:
            stored_row.duplicate_of_id = first.id
    session.flush()
    report.requeued_article_ids = sorted(requeue)
    return report


def _guid_scope(
    article: ParsedArticle, parsed: ParseResult, source: Source | None, location: str
) -> str:
    """Whose guid this is: the registered source, else the feed or file that named it."""
    if source:
        return source.url
    return article.source or parsed.feed_title or location


def _error_row(error: EntryError, location: str) -> dict[str, str]:
    return {"entry": error.entry, "reason": error.reason, "source": location}


def _article_row(
    article: ParsedArticle,
    keys: _Keys,
    source: Source | None,
    duplicate_of_id: int | None,
    now: datetime,
) -> Article:
    lead, _, _ = article.body.partition("\n\n")
    return Article(
        source_id=source.id if source else None,
        source_name=article.source or (source.name if source else None),
        guid=article.guid,
        url=article.url,
        url_key=keys.url_key,
        guid_key=keys.guid_key,
        fingerprint=keys.fingerprint,
        title_key=keys.title_key,
        duplicate_of_id=duplicate_of_id,
        title=article.title,
        lead=lead.strip(),
        body=article.body,
        language=article.language,
        tags=sorted({*article.tags, *(source.default_tags if source else [])}),
        author=article.author,
        published_at=article.published,
        match_state=MatchState.PENDING,
        match_queued_at=now,
    )


def _insert(session: Session, row: Article) -> bool:
    """Insert in a savepoint; False when a concurrent ingest stored it first."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True
