"""Retention: history past its period goes in batches; open promises, newsletter
results and what is still young stay; nothing is sent again afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from alerts.cli import main as cli_main
from alerts.config import get_settings
from alerts.db import Database
from alerts.digest import plan_due_digests
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
    Newsletter,
    RateEvent,
    Subscriber,
    SubscriberStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from alerts.retention import prune_all, storage_sizes
from tests.factories import stored_match

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
RECENT = NOW - timedelta(days=1)
_numbers = count()


def _article(session: Session, ingested_at: datetime) -> Article:
    number = next(_numbers)
    article = Article(
        title=f"Story {number}",
        fingerprint=f"fp{number}",
        title_key=f"tk{number}",
        ingested_at=ingested_at,
    )
    session.add(article)
    session.flush()
    return article


def _delivery(
    session: Session,
    subscriber: Subscriber,
    kind: DeliveryKind,
    state: DeliveryState,
    at: datetime,
    **fields: object,
) -> None:
    number = next(_numbers)
    session.add(
        Delivery(
            dedup_key=f"{kind}:{number}",
            kind=kind,
            state=state,
            subscriber_id=subscriber.id,
            recipient=subscriber.email,
            message_id=f"<{number}@test>",
            created_at=at,
            updated_at=at,
            **fields,
        )
    )


def _seed(session: Session) -> Subscriber:
    reader = Subscriber(
        email="reader@example.org", status=SubscriberStatus.CONFIRMED, last_digest_at=RECENT
    )
    session.add(reader)
    session.flush()
    interest = Interest(subscriber_id=reader.id, query="referendum")
    session.add(interest)
    session.flush()
    for moment in (OLD, OLD, RECENT):
        article = _article(session, moment)
        stored_match(session, interest.id, article.id, matched_at=moment)
    # An interest nobody follows any more: its distinct interest and match go.
    gone = Interest(subscriber_id=reader.id, query="abandoned")
    session.add(gone)
    session.flush()
    stored_match(session, gone.id, _article(session, RECENT).id, matched_at=RECENT)
    session.delete(gone)
    # An interest edited twice: the link it had until long ago goes, and then its
    # distinct interest; the one closed recently still reaches recent matches.
    edited = Interest(subscriber_id=reader.id, query="edited")
    session.add(edited)
    old_meaning, recent_meaning = (
        DistinctInterest(match_key="a" * 64),
        DistinctInterest(match_key="b" * 64),
    )
    session.add_all([old_meaning, recent_meaning])
    session.flush()
    session.add_all(
        [
            InterestLink(
                interest_id=edited.id,
                distinct_id=old_meaning.id,
                since=OLD - timedelta(days=1),
                until=OLD,
            ),
            InterestLink(
                interest_id=edited.id, distinct_id=recent_meaning.id, since=OLD, until=RECENT
            ),
        ]
    )
    for state in (DeliveryState.SENT, DeliveryState.BOUNCED, DeliveryState.SKIPPED):
        _delivery(session, reader, DeliveryKind.DIGEST, state, OLD)
    _delivery(session, reader, DeliveryKind.ALERT, DeliveryState.QUEUED, OLD)  # still promised
    _delivery(session, reader, DeliveryKind.ALERT, DeliveryState.SENT, RECENT)
    issue = Newsletter(subject="Weekly")
    session.add(issue)
    session.flush()
    _delivery(
        session, reader, DeliveryKind.NEWSLETTER, DeliveryState.SENT, OLD, newsletter_id=issue.id
    )
    endpoint = WebhookEndpoint(url="https://hooks.example.org/x", secret="s")
    session.add(endpoint)
    session.flush()
    for number, state in enumerate((DeliveryState.SENT, DeliveryState.QUEUED)):
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint.id, event_id=f"e{number}", event="x", state=state, due_at=OLD
            )
        )
    session.add_all([RateEvent(key="signup:1", at=OLD) for _ in range(3)])
    session.add(RateEvent(key="signup:1", at=RECENT))
    session.add(AuditEntry(actor="admin@example.org", action="subscriber.erase", at=OLD))
    return reader


def _counts(session: Session) -> dict[str, int]:
    tables = {
        "articles": Article,
        "matches": Match,
        "deliveries": Delivery,
        "webhook_deliveries": WebhookDelivery,
        "rate_events": RateEvent,
        "audit_entries": AuditEntry,
    }
    return {
        name: session.scalar(select(func.count()).select_from(table)) or 0
        for name, table in tables.items()
    }


@pytest.fixture
def seeded(database: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("ALERTS_PRUNE_BATCH_ROWS", "1")  # every kind takes several batches
    get_settings.cache_clear()
    with database.session_scope() as session:
        _seed(session)
    return database


def test_a_dry_run_counts_what_would_go_and_deletes_nothing(seeded: Database) -> None:
    with seeded.session_scope() as session:
        before = _counts(session)
    report = prune_all(get_settings(), NOW, dry_run=True)
    assert report.as_dict() | {"cutoffs": None} == {
        "articles": 2,
        "matches": 3,
        "distinct_interests": 1,
        "interest_links": 1,
        "deliveries": 3,
        "webhook_deliveries": 1,
        "rate_events": 3,
        "audit_entries": 0,
        "total": 14,
        "cutoffs": None,
    }
    with seeded.session_scope() as session:
        assert _counts(session) == before


def test_pruning_removes_settled_history_in_batches_and_keeps_the_rest(seeded: Database) -> None:
    report = prune_all(get_settings(), NOW)
    assert (report.articles, report.matches, report.deliveries) == (2, 3, 3)
    assert (report.interest_links, report.distinct_interests) == (1, 2)
    assert (report.webhook_deliveries, report.rate_events, report.audit_entries) == (1, 3, 0)
    with seeded.session_scope() as session:
        assert _counts(session) == {
            "articles": 2,
            "matches": 1,
            "deliveries": 3,  # the open promise, the recent alert, the newsletter result
            "webhook_deliveries": 1,
            "rate_events": 1,
            "audit_entries": 1,
        }
        states = set(session.execute(select(Delivery.kind, Delivery.state)).all())
        assert states == {
            (DeliveryKind.ALERT, DeliveryState.QUEUED),
            (DeliveryKind.ALERT, DeliveryState.SENT),
            (DeliveryKind.NEWSLETTER, DeliveryState.SENT),
        }
    assert prune_all(get_settings(), NOW).total == 0


def test_the_audit_log_goes_only_when_a_period_is_set(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_RETAIN_AUDIT_DAYS", "365")
    get_settings.cache_clear()
    assert prune_all(get_settings(), NOW).audit_entries == 1


def test_no_digest_is_promised_again_once_old_windows_are_pruned(database: Database) -> None:
    settings = get_settings()
    with database.session_scope() as session:
        session.add(
            Subscriber(
                email="daily@example.org",
                status=SubscriberStatus.CONFIRMED,
                frequency=Frequency.DAILY,
                created_at=OLD,
            )
        )
    with database.session_scope() as session:
        first = plan_due_digests(session, settings, OLD + timedelta(days=1))
        session.query(Delivery).update(
            {Delivery.state: DeliveryState.SENT, Delivery.updated_at: OLD}
        )
    assert len(first) == 1
    assert prune_all(settings, NOW).deliveries == 1
    with database.session_scope() as session:
        again = plan_due_digests(session, settings, OLD + timedelta(days=1, minutes=5))
    assert again == []


def test_the_cli_prints_counts_as_json(
    seeded: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["prune", "--dry-run", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dry_run"] is True
    assert printed["audit_entries"] == 0
    assert "audit_entries" not in printed["cutoffs"]
    with seeded.session_scope() as session:
        if seeded.url.startswith("postgresql"):  # its row counts are the planner's estimates
            session.execute(text("ANALYZE articles"))
        sizes = {row["kind"]: row["rows"] for row in storage_sizes(session)}
    assert sizes["articles"] == 4
