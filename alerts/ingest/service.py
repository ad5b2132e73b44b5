"""Ingest entry points shared by the CLI, the clock and the workers."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.ingest.fetch import fetch_url
from alerts.ingest.formats import ParsedArticle, SourceError, parse_document
from alerts.ingest.limits import IngestLimits
from alerts.ingest.store import IngestReport, store_articles
from alerts.jobs import Job, QueuedJob, enqueue_after_commit
from alerts.metrics import INGEST_ENTRIES, INGEST_FAILURES
from alerts.models import Article, MatchState, Source
from alerts.webhooks import emit

logger = logging.getLogger(__name__)

MATCH_JOB = Job.MATCH_ARTICLES
# Shown for a failure that is not the source's fault; the log holds the traceback.
UNEXPECTED_FAILURE = "could not read this source because of an internal error (see the server log)"
# The metrics label of documents read by `alerts ingest` rather than a source.
COMMAND_LINE_SOURCE = "command line"
# Articles per match task: big enough to amortise loading the index, small
# enough that one slow batch does not hold alerts back.
MATCH_BATCH_SIZE = 200
# Most articles the match sweeper queues again per tick (50 tasks): a long
# outage's backlog goes out over a few ticks, not in one huge transaction.
MATCH_SWEEP_LIMIT = 10_000


def limits_from(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_source_bytes=settings.ingest_max_source_bytes,
        max_entries=settings.ingest_max_entries,
        max_title_chars=settings.ingest_max_title_chars,
        max_body_chars=settings.ingest_max_body_chars,
        fetch_timeout=settings.ingest_fetch_timeout,
    )


def ingest_document(
    session: Session,
    data: bytes,
    *,
    location: str,
    content_type: str | None,
    limits: IngestLimits,
    source: Source | None = None,
    redate_to: datetime | None = None,
) -> IngestReport:
    """Parse and store one document, then queue matching for what is new.

    ``redate_to`` moves every date in the document by one amount so that its
    newest article is from that moment (see ``redate``).
    Raises SourceError when the document cannot be read at all.
    """
    parsed = parse_document(data, location=location, content_type=content_type, limits=limits)
    if redate_to is not None:
        redate(parsed.articles, redate_to)
    report = store_articles(session, parsed, source=source, location=location)
    label = source.name if source else COMMAND_LINE_SOURCE
    for outcome in ("new", "duplicate", "rejected"):
        INGEST_ENTRIES.labels(label, outcome).inc(getattr(report, outcome))
    # A duplicate still pending lost its match task, or its task is still on
    # the way; queueing it again is harmless, the task claims each article once.
    report.match_jobs = queue_matching(
        session, [*report.new_article_ids, *report.requeued_article_ids]
    )
    return report


def redate(articles: list[ParsedArticle], newest: datetime) -> None:
    """Shift the articles' dates together so the newest one falls at ``newest``.

    A sample or an archive loaded for a demo keeps its order and spacing but
    reads as today's news, so the first preview and digest are not empty.
    Articles without a date stay without one.
    """
    dated = [article.published for article in articles if article.published is not None]
    if not dated:
        return
    shift = newest - max(dated)
    for article in articles:
        if article.published is not None:
            article.published += shift


def queue_matching(session: Session, article_ids: list[int]) -> list[QueuedJob]:
    """Queue match tasks for these articles after commit, in batches."""
    return [
        enqueue_after_commit(
            session, MATCH_JOB, article_ids=article_ids[start : start + MATCH_BATCH_SIZE]
        )
        for start in range(0, len(article_ids), MATCH_BATCH_SIZE)
    ]


def sweep_unmatched(session: Session, now: datetime, *, requeue_after: timedelta) -> list[int]:
    """Queue matching again for articles whose match task was lost.

    An article is pending from the transaction that stores it until the one
    that stores its matches. Pending and queued longer ago than
    ``requeue_after`` means the broker lost the task (a Redis restarted empty)
    or never took it (it was down when the ingest committed). Rows a match
    task holds right now are skipped (SKIP LOCKED): they are being matched,
    and the clock never waits on a worker. Returns the ids queued.
    """
    ids = list(
        session.scalars(
            select(Article.id)
            .where(
                Article.match_state == MatchState.PENDING,
                or_(
                    Article.match_queued_at.is_(None),
                    Article.match_queued_at <= now - requeue_after,
                ),
            )
            .order_by(Article.id)
            .limit(MATCH_SWEEP_LIMIT)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(update(Article).where(Article.id.in_(ids)).values(match_queued_at=now))
        queue_matching(session, ids)
    return ids


def claim_due_sources(session: Session, now: datetime) -> list[int]:
    """Ids of active sources whose poll is due, each pushed to its next slot.

    Moving ``next_poll_at`` in the same transaction that queues the poll means
    the next tick does not queue it again while it is still running.
    """
    sources = session.scalars(
        select(Source)
        .where(Source.active.is_(True))
        .where(or_(Source.next_poll_at.is_(None), Source.next_poll_at <= now))
        .order_by(Source.id)
        .with_for_update(skip_locked=True)
    ).all()
    for source in sources:
        source.next_poll_at = now + timedelta(minutes=source.poll_minutes)
        enqueue_after_commit(session, Job.POLL_SOURCE, source_id=source.id)
    return [source.id for source in sources]


def _record_failure(session: Session, source: Source, reason: str, now: datetime) -> None:
    INGEST_FAILURES.labels(source.name).inc()
    if source.last_status != "error":  # once when it starts failing, not every poll
        emit(session, "source.failing", {"source_id": source.id, "error": reason}, now)
    source.last_status = "error"
    source.last_error = reason


def poll_source(
    session: Session, source_id: int, now: datetime, limits: IngestLimits
) -> IngestReport:
    """Fetch one registered source (conditional GET) and store what is new.

    A failure is recorded on the source, never raised: the next poll tries again.
    """
    source = session.get_one(Source, source_id)
    source.last_polled_at = now
    report = IngestReport()
    try:
        fetched = fetch_url(
            source.url, etag=source.etag, last_modified=source.last_modified, limits=limits
        )
        if fetched.data is None:
            source.last_status = "not_modified"
        else:
            report = ingest_document(
                session,
                fetched.data,
                location=fetched.url,
                content_type=fetched.content_type,
                limits=limits,
                source=source,
            )
            source.etag, source.last_modified = fetched.etag, fetched.last_modified
            source.last_status = "ok"
        source.last_error = None
    except SourceError as error:
        _record_failure(session, source, str(error), now)
    except Exception:
        # A bug or a missing package (trafilatura without lxml_html_clean raised
        # ImportError) must not vanish into a task traceback: the source says it
        # failed, and the log has the detail.
        logger.exception("polling source %s (%s) failed unexpectedly", source.id, source.url)
        _record_failure(session, source, UNEXPECTED_FAILURE, now)
    source.last_counts = {key: value for key, value in report.as_json().items() if key != "errors"}
    return report
