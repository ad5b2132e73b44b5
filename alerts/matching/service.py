"""Matching stored articles against stored interests, and recording the matches.

A worker keeps one compiled :class:`InterestIndex` in memory and brings it up
to date before each batch: interests changed since the last look are
re-filed, deleted ones dropped; nothing is rebuilt from scratch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import JsonbDumper
from sqlalchemy import func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.matching.document import analyze
from alerts.matching.index import Explanation, InterestIndex
from alerts.matching.index import Interest as IndexedInterest
from alerts.matching.query import QueryError
from alerts.metrics import (
    INTERESTS_SKIPPED,
    MATCH_SECONDS,
    MATCHES_PER_ARTICLE,
    PREVIEW_ARTICLES,
)
from alerts.models import Article, Interest, Match, MatchState
from alerts.regions.gazetteer import Gazetteer

# Ranking weights: a hit in the title says more than one in the body.
ZONE_WEIGHTS = {"title": 3.0, "tag": 2.0, "lead": 2.0, "body": 1.0}
# Rows fetched per query while loading interests into the index.
LOAD_CHUNK = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger("alerts.matching")


@dataclass
class IndexCache:
    """The in-memory index of one worker process and what it has seen."""

    gazetteer: Gazetteer
    settings: Settings
    index: InterestIndex = field(init=False)
    subscriber_of: dict[int, int] = field(default_factory=dict)
    seen_until: datetime = EPOCH
    broken: dict[int, str] = field(default_factory=dict)  # interest id -> why it was skipped

    def __post_init__(self) -> None:
        self.index = InterestIndex(
            self.gazetteer,
            max_length=self.settings.query_max_length,
            max_terms=self.settings.query_max_terms,
            max_depth=self.settings.query_max_depth,
        )

    def refresh(self, session: Session) -> InterestIndex:
        """File interests changed since the last refresh and drop deleted ones."""
        latest, count = session.execute(
            select(func.max(Interest.updated_at), func.count(Interest.id))
        ).one()
        if latest is not None and latest > self.seen_until:
            changed = session.execute(
                select(Interest.id, Interest.subscriber_id, Interest.query, Interest.regions)
                .where(Interest.updated_at >= self.seen_until)
                .execution_options(yield_per=LOAD_CHUNK)
            )
            for interest_id, subscriber_id, query, regions in changed:
                self._file(interest_id, subscriber_id, query, regions)
            self.seen_until = latest
        # A count that differs from what is filed (or set aside as broken) means
        # some interests were deleted since.
        if count != len(self.subscriber_of) + len(self.broken):
            self._drop_deleted(session)
        INTERESTS_SKIPPED.set(len(self.broken))
        return self.index

    def _file(self, interest_id: int, subscriber_id: int, query: str | None, regions: Any) -> None:
        try:
            self.index.add(IndexedInterest(str(interest_id), query, tuple(regions or ())))
        except (QueryError, ValueError) as error:
            # Validated on the way in; one that no longer parses (stored before
            # a limit existed or was lowered, a region renamed) is skipped and
            # reported, never fatal: every other reader still gets matched.
            if self.broken.get(interest_id) != str(error):
                log.warning(
                    "interest %s skipped: it cannot be matched: %s",
                    interest_id,
                    getattr(error, "message", str(error)),
                    extra={"subscriber_id": subscriber_id},
                )
            self.broken[interest_id] = str(error)
            if str(interest_id) in self.index:
                self.index.remove(str(interest_id))
            self.subscriber_of.pop(interest_id, None)
            return
        self.broken.pop(interest_id, None)
        self.subscriber_of[interest_id] = subscriber_id

    def _drop_deleted(self, session: Session) -> None:
        existing = set(session.scalars(select(Interest.id)))
        for interest_id in [i for i in self.subscriber_of if i not in existing]:
            self.index.remove(str(interest_id))
            del self.subscriber_of[interest_id]
        for interest_id in [i for i in self.broken if i not in existing]:
            del self.broken[interest_id]


def score(explanation: Explanation) -> float:
    """Rank weight of one match: where its terms and regions were found."""
    zone_sets = [hit.zones for hit in explanation.terms] + [
        hit.zones for hit in explanation.regions
    ]
    return sum(
        max((ZONE_WEIGHTS.get(zone, 1.0) for zone in zones), default=1.0) for zones in zone_sets
    )


@dataclass(frozen=True)
class NewMatch:
    article_id: int
    subscriber_id: int
    interest_id: int


# The columns of a stored match, in the order rows are built.
MATCH_COLUMNS = ("article_id", "interest_id", "subscriber_id", "score", "explanation", "matched_at")
_COLUMN_LIST = ", ".join(MATCH_COLUMNS)
# Matches arrive in thousands per article. On PostgreSQL they are copied into a
# scratch table of the connection (shaped like ``matches``, without its keys)
# and moved over in one statement: a multi-row INSERT spent most of its time
# having its thousands of placeholders parsed. Both routes keep a redelivered
# task from storing a match twice.
STAGING_TABLE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS staged_matches ON COMMIT DELETE ROWS"  # noqa: S608
    f" AS SELECT {_COLUMN_LIST} FROM matches WITH NO DATA"
)
MOVE_STAGED = (
    f"INSERT INTO matches ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM staged_matches"  # noqa: S608
    " ON CONFLICT (article_id, interest_id) DO NOTHING"
    " RETURNING article_id, subscriber_id, interest_id"
)


def store_matches(session: Session, rows: list[tuple[Any, ...]]) -> list[NewMatch]:
    """Insert match rows (values in MATCH_COLUMNS order), skipping any already
    stored; returns the ones that are new."""
    if not rows:
        return []
    inserted: Sequence[tuple[Any, ...]]
    if session.get_bind().dialect.name == "postgresql":
        driver = session.connection().connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        with driver.cursor() as cursor:
            cursor.adapters.register_dumper(dict, JsonbDumper)  # the explanation
            cursor.execute(STAGING_TABLE)
            with cursor.copy(f"COPY staged_matches ({_COLUMN_LIST}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(MOVE_STAGED)
            inserted = cursor.fetchall()
    else:
        statement = sqlite.insert(Match).on_conflict_do_nothing(
            index_elements=["article_id", "interest_id"]
        )
        inserted = session.execute(
            statement.returning(Match.article_id, Match.subscriber_id, Match.interest_id),
            [dict(zip(MATCH_COLUMNS, row, strict=True)) for row in rows],
        ).all()
    return [NewMatch(*row) for row in inserted]


def claim_for_matching(session: Session, article_ids: Sequence[int]) -> list[int]:
    """Mark the pending ones among ``article_ids`` done; returns their ids.

    The claim is the first write of the task's transaction, so on SQLite it
    takes the write lock before anything is read. On PostgreSQL rows another
    task holds (a re-queued copy of the same batch) are skipped, not waited
    for: that task is matching them, and skipping can never deadlock.
    """
    if not article_ids:
        return []
    pending = (
        select(Article.id)
        .where(Article.id.in_(article_ids), Article.match_state == MatchState.PENDING)
        .with_for_update(skip_locked=True)
    )
    claimed = session.scalars(
        update(Article)
        .where(Article.id.in_(pending))
        .values(match_state=MatchState.DONE)
        .returning(Article.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed)


def match_articles(
    session: Session, article_ids: Sequence[int], cache: IndexCache, now: datetime
) -> list[NewMatch]:
    """Match the articles still pending against every interest and store the
    new matches; returns those.

    Each article is claimed first (pending -> done) in the transaction that
    stores its matches, so they commit together: a redelivered or re-queued
    task finds it done and does nothing, and a task that fails leaves it
    pending for the sweeper. The unique (article, interest) key stays as the
    last guard against a match stored twice.
    """
    claimed = claim_for_matching(session, article_ids)
    if not claimed:
        return []
    index = cache.refresh(session)
    articles = session.scalars(select(Article).where(Article.id.in_(claimed))).all()
    rows: list[tuple[Any, ...]] = []
    # Many interests share a word, so many matches share an explanation.
    as_dict: dict[Explanation, dict[str, Any]] = {}
    for article in articles:
        started = time.perf_counter()
        document = analyze(
            str(article.id),
            title=article.title,
            body=article.body,
            tags=article.tags,
            source=article.source_name or "",
            language=article.language,
            gazetteer=cache.gazetteer,
        )
        found = index.match(document)
        MATCH_SECONDS.observe(time.perf_counter() - started)
        MATCHES_PER_ARTICLE.observe(len(found))
        for match in found:
            interest_id = int(match.interest_id)
            explanation = as_dict.get(match.explanation)
            if explanation is None:
                explanation = as_dict[match.explanation] = dataclasses.asdict(match.explanation)
            rows.append(
                (
                    article.id,
                    interest_id,
                    cache.subscriber_of[interest_id],
                    score(match.explanation),
                    explanation,
                    now,
                )
            )
    return store_matches(session, rows)


# Articles fetched per query when previewing an interest.
PREVIEW_CHUNK = 500


@dataclass(frozen=True)
class PreviewHit:
    article_id: int
    title: str
    published: datetime | None
    explanation: Explanation


def preview_interest(
    session: Session,
    query: str | None,
    regions: Sequence[str],
    *,
    since: datetime,
    gazetteer: Gazetteer,
    settings: Settings,
    limit: int = 50,
    max_articles: int | None = None,
) -> list[PreviewHit]:
    """The stored articles since ``since`` that this interest would have matched,
    newest first. Raises QueryError or UnknownRegionError for a bad interest.

    Each article is analysed on the spot, so the cost grows with the articles
    looked at: it stops at ``limit`` hits, and ``max_articles`` (the newest
    ones) bounds it when the caller is anyone on the internet.
    """
    index = InterestIndex(
        gazetteer,
        max_length=settings.query_max_length,
        max_terms=settings.query_max_terms,
        max_depth=settings.query_max_depth,
    )
    index.add(IndexedInterest("preview", query, tuple(regions)))
    hits: list[PreviewHit] = []
    newest = (
        select(Article)
        .where(Article.ingested_at >= since)
        .order_by(Article.ingested_at.desc(), Article.id.desc())
    )
    if max_articles is not None:
        newest = newest.limit(max_articles)
    articles = session.scalars(newest.execution_options(yield_per=PREVIEW_CHUNK))
    try:
        for article in articles:
            PREVIEW_ARTICLES.inc()
            document = analyze(
                str(article.id),
                title=article.title,
                body=article.body,
                tags=article.tags,
                source=article.source_name or "",
                language=article.language,
                gazetteer=gazetteer,
            )
            for match in index.match(document):
                hits.append(
                    PreviewHit(article.id, article.title, article.published_at, match.explanation)
                )
            if len(hits) >= limit:
                break
    finally:
        # stopping early leaves PostgreSQL's server-side cursor open otherwise
        articles.close()
    return hits
