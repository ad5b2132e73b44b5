"""Matching stored articles against stored interests, and recording the matches.

A worker keeps one compiled :class:`InterestIndex` in memory and brings it up
to date before each batch: interests changed since the last look are
re-filed, deleted ones dropped; nothing is rebuilt from scratch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import JsonbDumper
from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.db import utcnow
from alerts.matching.document import analyze
from alerts.matching.index import EntryMatch, Explanation, InterestIndex
from alerts.matching.index import Interest as IndexedInterest
from alerts.matching.query import QueryError
from alerts.metrics import (
    INTERESTS_SKIPPED,
    MATCH_SECONDS,
    MATCHES_PER_ARTICLE,
    PREVIEW_ARTICLES,
)
from alerts.models import Article, DistinctInterest, Interest, InterestLink, Match, MatchState
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

    def refresh(self, session: Session, now: datetime | None = None) -> InterestIndex:
        """File interests changed since the last refresh and drop deleted ones.

        Every interest filed is pointed at its distinct interest (created when
        new), ``now`` being the moment it starts to reach matches. Interests not
        linked yet (new, migrated unparsed, or whose distinct interest was pruned)
        are filed again whatever their time.
        """
        linked_at = now or utcnow()
        latest, count = session.execute(
            select(func.max(Interest.updated_at), func.count(Interest.id))
        ).one()
        changed_since = latest is not None and latest > self.seen_until
        wanted: ColumnElement[bool] = Interest.distinct_id.is_(None)
        if changed_since:
            wanted = wanted | (Interest.updated_at >= self.seen_until)
        changed = session.execute(
            select(
                Interest.id,
                Interest.subscriber_id,
                Interest.query,
                Interest.regions,
                Interest.distinct_id,
            )
            .where(wanted)
            .execution_options(yield_per=LOAD_CHUNK)
        )
        links: dict[int, tuple[str, int | None]] = {}
        for interest_id, subscriber_id, query, regions, distinct_id in changed:
            if distinct_id is None and not changed_since and interest_id in self.broken:
                continue  # known not to parse, and unchanged since
            key = self._file(interest_id, subscriber_id, query, regions)
            if key is not None:
                links[interest_id] = (key, distinct_id)
        if changed_since:
            self.seen_until = latest
        if links:
            link_interests(session, links, linked_at)
        # A count that differs from what is filed (or set aside as broken) means
        # some interests were deleted since.
        if count != len(self.subscriber_of) + len(self.broken):
            self._drop_deleted(session)
        INTERESTS_SKIPPED.set(len(self.broken))
        return self.index

    def _file(
        self, interest_id: int, subscriber_id: int, query: str | None, regions: Any
    ) -> str | None:
        """File one interest; returns its match key, or None when it cannot be matched."""
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
            return None
        self.broken.pop(interest_id, None)
        self.subscriber_of[interest_id] = subscriber_id
        return self.index.key_of(str(interest_id))

    def _drop_deleted(self, session: Session) -> None:
        existing = set(session.scalars(select(Interest.id)))
        for interest_id in [i for i in self.subscriber_of if i not in existing]:
            self.index.remove(str(interest_id))
            del self.subscriber_of[interest_id]
        for interest_id in [i for i in self.broken if i not in existing]:
            del self.broken[interest_id]


# Keys looked up or created per statement (a bound IN list stays modest).
KEY_CHUNK = 1_000
# A distinct interest pruned between creating and reading it is created again;
# more rounds than this mean something else is deleting them.
KEY_ROUNDS = 3


def distinct_ids(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """The distinct interest id of each match key, creating those that are new.

    On PostgreSQL the rows read are held with FOR KEY SHARE until commit: the
    prune (``alerts.retention``) skips locked rows, so a distinct interest being
    linked or matched is never deleted under the transaction using it, and
    concurrent match workers do not wait for each other.
    """
    wanted = sorted(set(keys))
    found: dict[str, int] = {}
    for _ in range(KEY_ROUNDS):
        missing = [key for key in wanted if key not in found]
        if not missing:
            return found
        for start in range(0, len(missing), KEY_CHUNK):
            chunk = missing[start : start + KEY_CHUNK]
            _insert_keys(session, chunk)
            rows = session.execute(
                select(DistinctInterest.match_key, DistinctInterest.id)
                .where(DistinctInterest.match_key.in_(chunk))
                .with_for_update(key_share=True)
            )
            found.update({row.match_key: row.id for row in rows})
    missing = [key for key in wanted if key not in found]
    if missing:
        raise RuntimeError(f"{len(missing)} distinct interests vanished while being created")
    return found


def _insert_keys(session: Session, keys: Sequence[str]) -> None:
    values = [{"match_key": key, "created_at": utcnow()} for key in keys]
    table = DistinctInterest.metadata.tables[DistinctInterest.__tablename__]
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            postgresql.insert(table).on_conflict_do_nothing(index_elements=["match_key"]),
            values,
        )
    else:
        session.execute(
            sqlite.insert(table).on_conflict_do_nothing(index_elements=["match_key"]), values
        )


# Interests re-pointed per statement.
LINK_CHUNK = 1_000


def link_interests(
    session: Session, links: dict[int, tuple[str, int | None]], now: datetime
) -> int:
    """Point interests at their distinct interests; ``links`` maps an interest id to
    (its match key, the distinct id it points at now). Returns how many moved.

    A move closes the interest's open link at ``now`` and opens one to the new
    distinct interest (``InterestLink``): what the old meaning matched stays
    the reader's. ``updated_at`` is written back unchanged: linking is not an
    edit, and an edit is what makes every worker file the interest again.
    """
    ids = distinct_ids(session, (key for key, _ in links.values()))
    moves = [
        {"interest": interest_id, "distinct": ids[key], "moment": now}
        for interest_id, (key, current) in links.items()
        if current != ids[key]
    ]
    table = Interest.metadata.tables[Interest.__tablename__]
    link_table = InterestLink.metadata.tables[InterestLink.__tablename__]
    point = (
        update(table)
        .where(table.c.id == bindparam("interest"))
        .values(
            distinct_id=bindparam("distinct"),
            distinct_since=bindparam("moment"),
            updated_at=table.c.updated_at,
        )
    )
    close = (
        update(link_table)
        .where(link_table.c.interest_id == bindparam("interest"), link_table.c.until.is_(None))
        .values(until=bindparam("moment"))
    )
    open_ = insert(link_table).values(
        interest_id=bindparam("interest"),
        distinct_id=bindparam("distinct"),
        since=bindparam("moment"),
    )
    connection = session.connection()
    for start in range(0, len(moves), LINK_CHUNK):
        chunk = moves[start : start + LINK_CHUNK]
        connection.execute(close, chunk)
        connection.execute(open_, chunk)
        connection.execute(point, chunk)
    return len(moves)


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
    """A match stored just now: readers are reached through their interests."""

    article_id: int
    distinct_id: int


# The columns of a stored match, in the order rows are built.
MATCH_COLUMNS = ("article_id", "distinct_id", "score", "explanation", "matched_at")
_COLUMN_LIST = ", ".join(MATCH_COLUMNS)
# Matches arrive in hundreds per article. On PostgreSQL they are copied into a
# scratch table of the connection (shaped like ``matches``, without its keys)
# and moved over in one statement: a multi-row INSERT spent most of its time
# having its thousands of placeholders parsed. Both routes keep a redelivered
# task from storing a match twice.
STAGING_TABLE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS staged_distinct_matches ON COMMIT DELETE ROWS"  # noqa: S608
    f" AS SELECT {_COLUMN_LIST} FROM matches WITH NO DATA"
)
MOVE_STAGED = (
    f"INSERT INTO matches ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM staged_distinct_matches"  # noqa: S608
    " ON CONFLICT (article_id, distinct_id) DO NOTHING"
    " RETURNING article_id, distinct_id"
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
            with cursor.copy(f"COPY staged_distinct_matches ({_COLUMN_LIST}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(MOVE_STAGED)
            inserted = cursor.fetchall()
    else:
        statement = sqlite.insert(Match).on_conflict_do_nothing(
            index_elements=["article_id", "distinct_id"]
        )
        inserted = session.execute(
            statement.returning(Match.article_id, Match.distinct_id),
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
    pending for the sweeper. The unique (article, distinct interest) key stays
    as the last guard against a match stored twice. One row is stored per
    distinct interest that matched, however many readers share it.
    """
    claimed = claim_for_matching(session, article_ids)
    if not claimed:
        return []
    index = cache.refresh(session, now)
    articles = session.scalars(select(Article).where(Article.id.in_(claimed))).all()
    found: list[tuple[int, EntryMatch]] = []
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
        entries = index.match_entries(document)
        MATCH_SECONDS.observe(time.perf_counter() - started)
        MATCHES_PER_ARTICLE.observe(sum(len(entry.interest_ids) for entry in entries))
        found.extend((article.id, entry) for entry in entries)
    ids = distinct_ids(session, (entry.match_key for _, entry in found))
    # Articles often match through the same words, so many share an explanation.
    as_dict: dict[Explanation, dict[str, Any]] = {}
    rows: list[tuple[Any, ...]] = []
    for article_id, entry in found:
        explanation = as_dict.get(entry.explanation)
        if explanation is None:
            explanation = as_dict[entry.explanation] = dataclasses.asdict(entry.explanation)
        rows.append((article_id, ids[entry.match_key], score(entry.explanation), explanation, now))
    return store_matches(session, rows)


class ReachedMatch(NamedTuple):
    """A stored match as one reader sees it, through one of their interests."""

    subscriber_id: int
    interest_id: int
    article_id: int
    score: float
    explanation: Any  # a dict, or its JSON text when asked for as text
    matched_at: datetime


def reached_matches(
    subscriber_ids: Collection[int | None] | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    article_ids: Collection[int | None] | None = None,
    distinct_ids: Collection[int] | None = None,
    explanation_as_text: bool = False,
) -> Select[Any]:
    """The one way from stored matches to readers: every (reader's interest, match)
    pair, as a statement callers may join further (``Subscriber`` and
    ``Interest`` are in it) and run.

    A reader reaches a distinct interest's matches found while one of their
    interests was linked to it (``InterestLink``, since inclusive, until
    exclusive): what it matched before the reader followed it was never
    theirs, and what an edited interest matched under its old meaning still
    is. ``since`` and ``until`` bound ``matched_at`` (until exclusive);
    ``explanation_as_text`` hands the JSON over undecoded, so callers decode
    each distinct one once. Served by ``ix_interests_subscriber_id``,
    ``ix_interest_links_interest_id`` and ``ix_matches_distinct_matched_at``.
    """
    explanation: Any = (
        cast(Match.explanation, Text).label("explanation")
        if explanation_as_text
        else Match.explanation
    )
    statement = (
        select(
            Interest.subscriber_id,
            Interest.id.label("interest_id"),
            Match.article_id,
            Match.score,
            explanation,
            Match.matched_at,
        )
        .select_from(Interest)
        .join(InterestLink, InterestLink.interest_id == Interest.id)
        .join(Match, Match.distinct_id == InterestLink.distinct_id)
        .where(
            Match.matched_at >= InterestLink.since,
            or_(InterestLink.until.is_(None), Match.matched_at < InterestLink.until),
        )
    )
    if subscriber_ids is not None:
        statement = statement.where(Interest.subscriber_id.in_(subscriber_ids))
    if since is not None:
        statement = statement.where(Match.matched_at >= since)
    if until is not None:
        statement = statement.where(Match.matched_at < until)
    if article_ids is not None:
        statement = statement.where(Match.article_id.in_(article_ids))
    if distinct_ids is not None:
        statement = statement.where(Match.distinct_id.in_(distinct_ids))
    return statement


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
