"""Test data, made one way: rows many tests need, bulk seeders shared by tests
and benches, and the console's sign-in and form helpers.

The bulk seeders insert with one statement per table (``insert().returning``),
so a bench can seed 20,000 readers in seconds and a test can seed 12 without
the planners' own code in the way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.ledger import Promise, alert_key, promise
from alerts.delivery.queueing import message_id_for
from alerts.matching import Interest as IndexedInterest
from alerts.matching import prepare_interest
from alerts.matching.index import match_key
from alerts.models import (
    Article,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryState,
    DistinctInterest,
    Frequency,
    Interest,
    InterestLink,
    Match,
    Role,
    Subscriber,
    SubscriberStatus,
    WebhookEndpoint,
)
from alerts.regions import default_gazetteer
from alerts.subscribers import NewSubscriber, add_subscriber
from alerts.users import create_user
from alerts.web.app import create_app

PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
MATCH_INSERT_CHUNK = 10_000  # rows per INSERT: below every driver's parameter limit
# Test interests reach their matches from long before any test's moment.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


# --- single rows ----------------------------------------------------------------------


def reader_with_a_sent_digest(
    database: Database, email: str = "reader@example.org"
) -> tuple[int, int]:
    """A confirmed reader with one sent digest: (subscriber id, delivery id)."""
    with database.session_scope() as session:
        reader = Subscriber(email=email, status=SubscriberStatus.CONFIRMED)
        session.add(reader)
        session.flush()
        delivery = Delivery(
            dedup_key=f"digest:{reader.id}:w",
            kind=DeliveryKind.DIGEST,
            state=DeliveryState.SENT,
            subscriber_id=reader.id,
            recipient=email,
            message_id=f"<{reader.id}@test>",
        )
        session.add(delivery)
        session.add(
            WebhookEndpoint(
                url="https://hooks.example.org/x", events=["delivery.bounced"], secret="s"
            )
        )
        session.flush()
        return reader.id, delivery.id


def add_reader(database: Database, email: str, query: str = "flood", confirmed: bool = True) -> int:
    """A reader added the way the console adds one (the domain's own checks run)."""
    with database.session_scope() as session:
        data = NewSubscriber(email=email, query=query, confirmed=confirmed, consent_source="test")
        return add_subscriber(session, data, get_settings(), utcnow()).id


def add_user(database: Database, email: str, role: Role, password: str = PASSWORD) -> int:
    """A console user who can sign in with ``password``."""
    with database.session_scope() as session:
        return create_user(session, "test", email, password, role, utcnow()).id


# Who the audit log names for what a test sets up (users, tokens) before it acts.
SETUP_ACTOR = "test"


def audit_actions(database: Database) -> list[tuple[str, str | None, str | None]]:
    """(action, target type, target id) of every audit entry but the set-up's, oldest first."""
    with database.session_scope() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.actor != SETUP_ACTOR).order_by(AuditEntry.id)
        )
        return [(entry.action, entry.target_type, entry.target_id) for entry in rows]


# --- the console over HTTP --------------------------------------------------------------


def form_token(client: TestClient, path: str = "/admin/login") -> str:
    """The CSRF token of the form on ``path``, as a browser would read it."""
    page = client.get(path)
    match = CSRF_FIELD.search(page.text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> Response:
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": form_token(client)},
        follow_redirects=False,
    )


def signed_in(email: str, password: str = PASSWORD) -> TestClient:
    """A browser signed in to the console as ``email`` (the user must exist)."""
    client = TestClient(create_app())
    response = log_in(client, email, password)
    assert response.status_code == 303, response.text
    return client


def post_form(
    client: TestClient, path: str, token_page: str, **fields: str | list[str]
) -> Response:
    """A form post with this browser's CSRF token, read from ``token_page``."""
    return client.post(
        path,
        data={**fields, "csrf_token": form_token(client, token_page)},
        follow_redirects=False,
    )


# --- bulk seeders -----------------------------------------------------------------------


def reader_row(email: str, since: datetime, **fields: Any) -> dict[str, Any]:
    """A confirmed daily reader in UTC, as an INSERT row; ``fields`` override."""
    row: dict[str, Any] = {
        "email": email,
        "status": SubscriberStatus.CONFIRMED,
        "frequency": Frequency.DAILY,
        "timezone": "UTC",
        "send_at": time(0, 0),
        "weekly_day": 0,
        "language": "en",
        "paused": False,
        "created_at": since,
        "confirmed_at": since,
        "last_digest_at": since,
    }
    row.update(fields)
    return row


def insert_readers(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Subscriber rows (see ``reader_row``) in one statement; ids in row order."""
    return list(
        session.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True), rows
        ).all()
    )


def insert_interests(
    session: Session, subscriber_ids: Sequence[int], queries: Sequence[str], since: datetime
) -> list[int]:
    """One interest per reader (``queries`` in the same order); ids in order."""
    return list(
        session.scalars(
            insert(Interest).returning(Interest.id, sort_by_parameter_order=True),
            [
                {
                    "subscriber_id": subscriber_id,
                    "query": query,
                    "regions": [],
                    "created_at": since,
                    "updated_at": since,
                }
                for subscriber_id, query in zip(subscriber_ids, queries, strict=True)
            ],
        ).all()
    )


def insert_articles(
    session: Session, stories: Sequence[tuple[str, str]], key: str, since: datetime, **fields: Any
) -> list[int]:
    """(title, body) stories as stored articles; ``key`` keeps fingerprints unique."""
    return list(
        session.scalars(
            insert(Article).returning(Article.id, sort_by_parameter_order=True),
            [
                {
                    "title": title,
                    "lead": body,
                    "body": body,
                    "fingerprint": f"{key}-{n}",
                    "title_key": f"{key}-{n}",
                    "language": "en",
                    "tags": [],
                    "ingested_at": since,
                    "published_at": since,
                    "source_name": "Test Desk",
                    **fields,
                }
                for n, (title, body) in enumerate(stories)
            ],
        ).all()
    )


def distinct_of(session: Session, query: str | None, regions: Sequence[str] = ()) -> int:
    """The distinct interest of (query, regions), created when new, under the key
    the match worker files it by: a worker that refreshes its index later finds
    the interests already pointing at the right one and leaves them be."""
    prepared = prepare_interest(IndexedInterest("key", query, tuple(regions)), default_gazetteer())
    key = match_key(prepared)
    existing = session.scalar(select(DistinctInterest.id).where(DistinctInterest.match_key == key))
    if existing is not None:
        return existing
    distinct = DistinctInterest(match_key=key)
    session.add(distinct)
    session.flush()
    return distinct.id


def link(session: Session, interest_ids: Sequence[int], distinct_id: int, since: datetime) -> None:
    """Point interests at a distinct interest from ``since`` on, as the match
    worker's refresh does: the interest's columns and its open link."""
    for start in range(0, len(interest_ids), MATCH_INSERT_CHUNK):
        chunk = interest_ids[start : start + MATCH_INSERT_CHUNK]
        session.execute(
            update(Interest)
            .where(Interest.id.in_(chunk))
            .values(
                distinct_id=distinct_id,
                distinct_since=since,
                # not an edit: the match worker would file the interests again
                updated_at=Interest.updated_at,
            )
        )
        session.execute(
            insert(InterestLink),
            [{"interest_id": i, "distinct_id": distinct_id, "since": since} for i in chunk],
        )


def insert_matches(
    session: Session,
    interest_ids: Sequence[int],
    article_ids: Iterable[int],
    term: str,
    matched_at: datetime,
) -> int:
    """Every interest in ``interest_ids`` (whose query is ``term``) shares one
    distinct interest, which matched each article on ``term`` in the title: one
    stored row per article, reached by every reader. Returns its id."""
    distinct_id = distinct_of(session, term)
    link(session, interest_ids, distinct_id, LONG_AGO)
    explanation = {"terms": [{"term": term, "zones": ["title"]}], "regions": []}
    rows = [
        {
            "article_id": article_id,
            "distinct_id": distinct_id,
            "score": 3.0,
            "explanation": explanation,
            "matched_at": matched_at,
        }
        for article_id in article_ids
    ]
    for start in range(0, len(rows), MATCH_INSERT_CHUNK):
        session.execute(insert(Match), rows[start : start + MATCH_INSERT_CHUNK])
    return distinct_id


def readers_with_due_digests(
    database: Database, count: int, *, articles: int = 3, prefix: str = "reader"
) -> list[str]:
    """``count`` confirmed daily readers, each with ``articles`` matches due in
    today's digest (window opened two days ago); returns their addresses."""
    now = utcnow()
    since = now - timedelta(days=2)
    emails = [f"{prefix}{n:05d}@example.org" for n in range(count)]
    with database.session_scope() as session:
        subscriber_ids = insert_readers(session, [reader_row(email, since) for email in emails])
        interest_ids = insert_interests(session, subscriber_ids, ["flood"] * count, since)
        stories = [(f"Flood report {n}", f"Water rose in district {n}.") for n in range(articles)]
        article_ids = insert_articles(session, stories, f"{prefix}-flood", since)
        insert_matches(session, interest_ids, article_ids, "flood", since + timedelta(hours=1))
    return emails


def alert_burst(
    database: Database, count: int, *, prefix: str = "alert"
) -> tuple[list[str], list[int]]:
    """One article alerting ``count`` immediate readers at once: the queued
    ledger rows a match task promises (the matching itself is tested elsewhere).
    Returns (addresses, delivery ids)."""
    settings = get_settings()
    now = utcnow()
    emails = [f"{prefix}{n:03d}@example.org" for n in range(count)]
    with database.session_scope() as session:
        subscriber_ids = insert_readers(
            session,
            [
                reader_row(email, now, frequency=Frequency.IMMEDIATE, last_digest_at=None)
                for email in emails
            ],
        )
        [article_id] = insert_articles(
            session,
            [("Avalanche closes the Kazbegi road", "Rescuers closed the road after an avalanche.")],
            f"{prefix}-burst",
            now,
        )
        ids = promise(
            session,
            [
                Promise(
                    dedup_key=alert_key(subscriber_id, article_id),
                    kind=DeliveryKind.ALERT,
                    recipient=email,
                    message_id=message_id_for(settings, alert_key(subscriber_id, article_id)),
                    due_at=now,
                    subscriber_id=subscriber_id,
                    article_id=article_id,
                )
                for subscriber_id, email in zip(subscriber_ids, emails, strict=True)
            ],
            now,
        )
    return emails, sorted(ids)


def stored_match(
    session: Session,
    interest_id: int,
    article_id: int,
    *,
    matched_at: datetime,
    score: float = 0.0,
    explanation: dict[str, Any] | None = None,
) -> Match:
    """A match as the worker stores it: under the interest's distinct interest
    (linked to it, reaching it since long ago, when it has none yet). An
    (article, distinct interest) already stored is returned as it is."""
    interest = session.get(Interest, interest_id)
    assert interest is not None
    if interest.distinct_id is None:
        link(
            session, [interest_id], distinct_of(session, interest.query, interest.regions), LONG_AGO
        )
        session.refresh(interest)
    stored = session.scalar(
        select(Match).where(
            Match.article_id == article_id, Match.distinct_id == interest.distinct_id
        )
    )
    if stored is not None:
        return stored
    match = Match(
        article_id=article_id,
        distinct_id=interest.distinct_id,
        score=score,
        explanation=explanation or {},
        matched_at=matched_at,
    )
    session.add(match)
    session.flush()
    return match
