"""Retention: old rows leave in small batches, so the database stops growing.

Each kind of row has its own period (settings ``ALERTS_RETAIN_*_DAYS``; 0 keeps
it forever). ``prune_batch`` deletes at most ``batch`` rows of each kind in the
caller's transaction; the edge (``alerts prune``, the clock's daily job) calls it
again, one short transaction at a time, until nothing is left, so no lock is
held for long and other writers go on.

What is never pruned, and why:
- deliveries that are not settled (queued, sending): they are promises still open;
- newsletter deliveries: an issue's results are counted from them (they go when
  an issue's figures are kept on the issue itself);
- subscribers, interests, newsletters, users, suppressions: they are the state of
  the system, not its history; erasure removes a reader.

Distinct interests nobody follows any more (their last interest was deleted or
changed its meaning) go at every prune whatever the periods, their matches first
in batches: nobody can reach those matches again (see ``reached_matches``).

Digest windows live on the subscriber (``last_digest_at``), not in old ledger
rows, and an article is matched once (its match ledger), so removing old
deliveries and matches can never make a mail go out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select, text
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.db import get_database
from alerts.models import (
    Article,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryState,
    DistinctInterest,
    Interest,
    InterestLink,
    Match,
    RateEvent,
    WebhookDelivery,
)

SETTLED = (
    DeliveryState.SENT,
    DeliveryState.FAILED,
    DeliveryState.BOUNCED,
    DeliveryState.SUPPRESSED,
    DeliveryState.SKIPPED,
)


@dataclass
class PruneReport:
    """Rows removed (or, in a dry run, that would be removed), by kind."""

    articles: int = 0
    matches: int = 0
    distinct_interests: int = 0
    interest_links: int = 0
    deliveries: int = 0
    webhook_deliveries: int = 0
    rate_events: int = 0
    audit_entries: int = 0
    cutoffs: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "cutoffs")

    def add(self, other: PruneReport) -> None:
        for f in fields(self):
            if f.name != "cutoffs":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.cutoffs = other.cutoffs

    def as_dict(self) -> dict[str, Any]:
        counts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cutoffs"}
        return {**counts, "total": self.total, "cutoffs": self.cutoffs}


# Kinds with no setting of their own, shown (on the dashboard) with the one that
# bounds them: a distinct interest is pruned once nobody follows it and its
# matches are gone.
_KEPT_LIKE = {"distinct_interests": "matches"}


def retention_days(settings: Settings, kind: str) -> int:
    """Days rows of ``kind`` are kept; 0 is forever."""
    kind = _KEPT_LIKE.get(kind, kind)
    days: int = getattr(settings, f"retain_{kind.removesuffix('_entries')}_days")
    return days


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime]:
    """The moment before which each kind of row goes; kinds kept forever are absent."""
    periods = {kind: retention_days(settings, kind) for kind in PRUNE_ORDER}
    return {kind: now - timedelta(days=days) for kind, days in periods.items() if days > 0}


def _candidates(kind: str, before: datetime) -> Select[Any]:
    """Ids of the rows of ``kind`` older than ``before``, oldest first, by an index."""
    condition: ColumnElement[bool]
    if kind == "articles":
        return select(Article.id).where(Article.ingested_at < before).order_by(Article.id)
    if kind == "matches":
        # matched_at has no index of its own; a match is as old as its article,
        # and (article_id, distinct_id) is indexed.
        old_articles = select(Article.id).where(Article.ingested_at < before)
        return select(Match.id).where(Match.article_id.in_(old_articles)).order_by(Match.id)
    if kind == "deliveries":
        condition = (
            Delivery.state.in_(SETTLED)
            & (Delivery.updated_at < before)
            & (Delivery.kind != DeliveryKind.NEWSLETTER)
        )
        return select(Delivery.id).where(condition).order_by(Delivery.id)
    if kind == "webhook_deliveries":
        condition = WebhookDelivery.state.in_(SETTLED) & (WebhookDelivery.due_at < before)
        return select(WebhookDelivery.id).where(condition).order_by(WebhookDelivery.id)
    if kind == "rate_events":
        return select(RateEvent.id).where(RateEvent.at < before).order_by(RateEvent.id)
    if kind == "audit_entries":
        return select(AuditEntry.id).where(AuditEntry.at < before).order_by(AuditEntry.id)
    raise ValueError(f"unknown kind of row: {kind}")


_TABLES: dict[str, Any] = {
    "articles": Article,
    "matches": Match,
    "distinct_interests": DistinctInterest,
    "deliveries": Delivery,
    "webhook_deliveries": WebhookDelivery,
    "rate_events": RateEvent,
    "audit_entries": AuditEntry,
}
# Matches go before their articles so an article's cascade has little to do.
PRUNE_ORDER = (
    "matches",
    "articles",
    "deliveries",
    "webhook_deliveries",
    "rate_events",
    "audit_entries",
)


def _orphans() -> Select[Any]:
    """Distinct interests no interest points at or was linked to, oldest first."""
    followed = select(Interest.id).where(Interest.distinct_id == DistinctInterest.id).exists()
    linked = select(InterestLink.id).where(InterestLink.distinct_id == DistinctInterest.id).exists()
    return select(DistinctInterest.id).where(~followed, ~linked).order_by(DistinctInterest.id)


def _closed_links(before: datetime) -> Select[Any]:
    """Links an edit closed before ``before``: every match they reach is older
    than that, so past the matches' retention nothing can reach through them."""
    return (
        select(InterestLink.id)
        .where(InterestLink.until.is_not(None), InterestLink.until < before)
        .order_by(InterestLink.id)
    )


def prune_orphans(
    session: Session,
    *,
    batch: int,
    dry_run: bool = False,
    links_closed_before: datetime | None = None,
) -> PruneReport:
    """Delete up to ``batch`` links closed before ``links_closed_before`` (the
    matches' cutoff; None keeps them), up to ``batch`` matches of unfollowed
    distinct interests, and once they have none left, up to ``batch`` of the
    distinct interests themselves.

    On PostgreSQL orphans are locked with SKIP LOCKED: a match worker holds the
    distinct interests it is linking or matching with FOR KEY SHARE
    (``alerts.matching.service.distinct_ids``), so one coming back into use is
    skipped, never deleted under it.
    """
    report = PruneReport()
    if links_closed_before is not None:
        closed = _closed_links(links_closed_before)
        if dry_run:
            report.interest_links = (
                session.scalar(select(func.count()).select_from(closed.subquery())) or 0
            )
        else:
            link_ids = list(session.scalars(closed.limit(batch)))
            if link_ids:
                session.execute(delete(InterestLink).where(InterestLink.id.in_(link_ids)))
            report.interest_links = len(link_ids)
    orphans = _orphans()
    if dry_run:
        report.distinct_interests = (
            session.scalar(select(func.count()).select_from(orphans.subquery())) or 0
        )
        report.matches = (
            session.scalar(select(func.count(Match.id)).where(Match.distinct_id.in_(orphans))) or 0
        )
        return report
    locked = list(session.scalars(orphans.limit(batch).with_for_update(skip_locked=True)))
    if not locked:
        return report
    match_ids = list(
        session.scalars(
            select(Match.id).where(Match.distinct_id.in_(locked)).order_by(Match.id).limit(batch)
        )
    )
    if match_ids:
        session.execute(delete(Match).where(Match.id.in_(match_ids)))
        report.matches = len(match_ids)
        return report
    session.execute(delete(DistinctInterest).where(DistinctInterest.id.in_(locked)))
    report.distinct_interests = len(locked)
    return report


def prune_batch(
    session: Session, settings: Settings, now: datetime, *, batch: int, dry_run: bool = False
) -> PruneReport:
    """Delete up to ``batch`` rows of each kind past its period (count them in a dry run),
    and a batch of unfollowed distinct interests or their matches.

    In a dry run nothing is deleted and every row that would go is counted at once.
    """
    moments = cutoffs(settings, now)
    report = prune_orphans(
        session, batch=batch, dry_run=dry_run, links_closed_before=moments.get("matches")
    )
    report.cutoffs = {kind: moment.isoformat() for kind, moment in moments.items()}
    for kind in PRUNE_ORDER:
        if kind not in moments:
            continue
        candidates = _candidates(kind, moments[kind])
        if dry_run:
            count = session.scalar(select(func.count()).select_from(candidates.subquery()))
            setattr(report, kind, getattr(report, kind) + (count or 0))
            continue
        ids = list(session.scalars(candidates.limit(batch)))
        if ids:
            table = _TABLES[kind]
            session.execute(delete(table).where(table.id.in_(ids)))
        setattr(report, kind, getattr(report, kind) + len(ids))
    return report


def storage_sizes(session: Session) -> list[dict[str, Any]]:
    """Rows, and bytes where the database can tell, of each table that grows.

    On PostgreSQL the row count is the planner's estimate (``reltuples``, kept by
    autovacuum): an exact count of a billion matches would take minutes.
    """
    dialect = session.get_bind().dialect.name
    sizes = []
    for kind, table in _TABLES.items():
        name = table.__tablename__
        size: int | None = None
        if dialect == "postgresql":
            estimate, size = session.execute(
                text(
                    "SELECT reltuples, pg_total_relation_size(oid) FROM pg_class "
                    "WHERE oid = to_regclass(:name)"
                ),
                {"name": name},
            ).one()
            rows = max(int(estimate), 0)
        else:
            rows = session.scalar(select(func.count()).select_from(table)) or 0
        sizes.append({"kind": kind, "table": name, "rows": rows, "bytes": size})
    return sizes


def database_bytes(session: Session) -> int | None:
    """The whole database's size on disk (PostgreSQL or SQLite), if it can be read."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return session.scalar(select(func.pg_database_size(func.current_database())))
    if dialect == "sqlite":
        size = session.scalar(
            text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
        )
        return int(size) if size is not None else None
    return None


def prune_all(settings: Settings, now: datetime, *, dry_run: bool = False) -> PruneReport:
    """Prune until nothing is left, one transaction per batch (the CLI's and clock's entry).

    Unlike the domain functions above, this owns its transactions: a commit per
    batch is what keeps each lock short while millions of rows go.
    """
    database = get_database(settings)
    total = PruneReport()
    while True:
        with database.session_scope() as session:
            step = prune_batch(
                session, settings, now, batch=settings.prune_batch_rows, dry_run=dry_run
            )
        total.add(step)
        if dry_run or step.total == 0:
            return total
