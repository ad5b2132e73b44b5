"""SQL statements per hot path, on SQLite and PostgreSQL: the same for N and 3N rows.

A behaviour, not a timing: a loop that queries once per reader (an N+1) makes
the count grow with the rows and fails here, however fast the machine is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from alerts.alerting import plan_alerts, process_new_articles
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.digest import plan_due_digests
from alerts.mailer import build_mailer
from alerts.matching.service import IndexCache, match_articles
from alerts.models import (
    AuditEntry,
    Base,
    DeliveryState,
    Frequency,
    Role,
    Source,
    Suppression,
    SuppressionReason,
    WebhookDelivery,
    WebhookEndpoint,
)
from alerts.newsletters import create_newsletter, schedule, start_due_issues
from alerts.regions import default_gazetteer
from alerts.webhooks import overview
from tests.conftest import CountQueries, RecordedJobs
from tests.factories import (
    add_user,
    alert_burst,
    insert_articles,
    insert_interests,
    insert_readers,
    reader_row,
    readers_with_due_digests,
    signed_in,
)

SMALL = 4
LARGE = 3 * SMALL


def emptied(database: Database) -> None:
    """Every table empty, so each measurement starts from the same state."""
    with database.session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))


def immediate_readers_and_an_article(database: Database, count: int) -> int:
    """``count`` immediate readers who all want the one new article; its id."""
    emptied(database)
    now = utcnow()
    with database.session_scope() as session:
        rows = [
            reader_row(f"now{n:03d}@example.org", now, frequency=Frequency.IMMEDIATE)
            for n in range(count)
        ]
        ids = insert_readers(session, rows)
        insert_interests(session, ids, ["avalanche"] * count, now)
        [article_id] = insert_articles(
            session, [("Avalanche closes the road", "An avalanche hit.")], "count", now
        )
    return article_id


def test_process_new_articles_costs_the_same_for_n_and_3n_readers(
    database: Database, recorded_jobs: RecordedJobs, count_queries: CountQueries
) -> None:
    settings = get_settings()

    def cost(readers: int) -> int:
        article_id = immediate_readers_and_an_article(database, readers)
        cache = IndexCache(default_gazetteer(), settings)
        with count_queries(database) as statements, database.session_scope() as session:
            alerts = process_new_articles(session, [article_id], cache, settings, utcnow())
        assert len(alerts) == readers
        return len(statements)

    assert cost(SMALL) == cost(LARGE)


def test_plan_alerts_costs_the_same_for_n_and_3n_matches(
    database: Database, recorded_jobs: RecordedJobs, count_queries: CountQueries
) -> None:
    settings = get_settings()

    def cost(readers: int) -> int:
        article_id = immediate_readers_and_an_article(database, readers)
        cache = IndexCache(default_gazetteer(), settings)
        with database.session_scope() as session:
            matches = match_articles(session, [article_id], cache, utcnow())
            with count_queries(database) as statements:
                alerts = plan_alerts(session, matches, settings, utcnow())
        assert len(alerts) == readers
        return len(statements)

    assert cost(SMALL) == cost(LARGE)


def test_plan_due_digests_costs_the_same_for_n_and_3n_readers(
    database: Database, count_queries: CountQueries
) -> None:
    settings = get_settings()

    def cost(readers: int) -> int:
        emptied(database)
        readers_with_due_digests(database, readers)
        with count_queries(database) as statements, database.session_scope() as session:
            planned = plan_due_digests(session, settings, utcnow())
        assert len(planned) == readers
        return len(statements)

    assert cost(SMALL) == cost(LARGE)


def test_start_due_issues_costs_the_same_for_n_and_3n_recipients(
    database: Database, count_queries: CountQueries
) -> None:
    settings = get_settings()

    def cost(readers: int) -> int:
        emptied(database)
        readers_with_due_digests(database, readers)
        now = utcnow()
        with database.session_scope() as session:
            issue = create_newsletter(
                session,
                "test",
                subject="Morning briefing",
                sections=[{"title": "Floods", "query": "flood"}],
                settings=settings,
                now=now,
            )
            schedule(session, issue.id, now + timedelta(minutes=1), "UTC", now, actor="system")
        with count_queries(database) as statements, database.session_scope() as session:
            started = start_due_issues(session, settings, now + timedelta(minutes=2))
        assert len(started) == readers
        return len(statements)

    assert cost(SMALL) == cost(LARGE)


def test_send_deliveries_costs_a_fixed_number_of_statements_per_message(
    database: Database, count_queries: CountQueries
) -> None:
    """Sending has to write each outcome, so the count grows by the same
    number per message; the preparation (load, block, compose) stays fixed."""
    mailer = build_mailer(get_settings())  # the outbox folder: no SMTP is configured

    def cost(readers: int) -> int:
        emptied(database)
        _, ids = alert_burst(database, readers)
        with count_queries(database) as statements:
            report = send_deliveries(database, ids, mailer, utcnow)
        assert report.sent == readers
        return len(statements)

    small, large = cost(SMALL), cost(LARGE)
    per_message, remainder = divmod(large - small, LARGE - SMALL)
    assert remainder == 0, (small, large)
    assert per_message <= 2, (small, large)  # its outcome and its claim, at most
    assert small - SMALL * per_message <= 12, small  # the fixed part


# --- the console's list pages ------------------------------------------------------


def webhook_with_deliveries(
    session: Session, url: str, delivered: int, now: datetime
) -> WebhookEndpoint:
    """An endpoint with ``delivered`` sent events, one that failed an hour ago
    (its last answer) and one still queued, never tried, that came in later."""
    endpoint = WebhookEndpoint(url=url, events=["newsletter.sent"], secret="s")
    session.add(endpoint)
    session.flush()
    hour = timedelta(hours=1)
    ledger = [
        WebhookDelivery(
            event_id=f"sent-{n}",
            state=DeliveryState.SENT,
            attempts=1,
            last_status=200,
            last_response="ok",
            updated_at=now - 2 * hour - n * timedelta(minutes=1),
        )
        for n in range(delivered)
    ]
    ledger.append(
        WebhookDelivery(
            event_id="failed",
            state=DeliveryState.FAILED,
            attempts=3,
            last_status=502,
            last_response=f"gateway {url}",
            updated_at=now - hour,
        )
    )
    ledger.append(WebhookDelivery(event_id="queued", state=DeliveryState.QUEUED, updated_at=now))
    for delivery in ledger:
        delivery.endpoint_id = endpoint.id
        delivery.event = "newsletter.sent"
    session.add_all(ledger)
    return endpoint


def test_webhook_overview_costs_the_same_for_n_and_3n_endpoints(
    database: Database, count_queries: CountQueries
) -> None:
    """Each endpoint's own counts and last answer, whatever the number of endpoints."""

    def cost(endpoints: int) -> int:
        emptied(database)
        now = utcnow()
        urls = [f"https://hooks.example.org/{n}" for n in range(endpoints)]
        with database.session_scope() as session:
            for n, url in enumerate(urls):
                webhook_with_deliveries(session, url, n + 1, now)
            session.add(WebhookEndpoint(url="https://hooks.example.org/new", events=[], secret="s"))
        with count_queries(database) as statements, database.session_scope() as session:
            rows = overview(session)
        assert [row["url"] for row in rows] == [*urls, "https://hooks.example.org/new"]
        for n, (url, row) in enumerate(zip(urls, rows, strict=False)):
            assert row["deliveries"] == {"failed": 1, "queued": 1, "sent": n + 1}, row
            assert (row["last_event"], row["last_status"], row["last_response"]) == (
                "newsletter.sent",
                502,
                f"gateway {url}",
            )
            assert row["last_at"] == (now - timedelta(hours=1)).isoformat()
        untouched = rows[-1]
        assert untouched["deliveries"] == {}
        assert (untouched["last_event"], untouched["last_at"], untouched["last_status"]) == (
            None,
            None,
            None,
        )
        return len(statements)

    assert cost(SMALL) == cost(LARGE)


CONSOLE_LISTS = (
    "/admin/subscribers",
    "/admin/suppressions",
    "/admin/audit",
    "/admin/webhooks",
    "/admin/users",
    "/editor",
    "/editor/sources",
)


def more_console_rows(database: Database, count: int, key: str) -> None:
    """``count`` more rows on every console list (readers, suppressions, audit
    entries, webhooks, issues, sources)."""
    now = utcnow()
    with database.session_scope() as session:
        rows = [reader_row(f"{key}{n:03d}@example.org", now) for n in range(count)]
        ids = insert_readers(session, rows)
        insert_interests(session, ids, ["flood"] * count, now)
        for n in range(count):
            session.add(
                Suppression(email=f"{key}-gone{n}@example.org", reason=SuppressionReason.MANUAL)
            )
            session.add(AuditEntry(actor="boss@example.org", action="test.seed", target_id=str(n)))
            webhook_with_deliveries(session, f"https://hooks.example.org/{key}{n}", n + 1, now)
            session.add(Source(name=f"Desk {key}{n}", url=f"https://feeds.example.org/{key}{n}"))
            create_newsletter(
                session, "test", subject=f"Issue {key}{n}", settings=get_settings(), now=now
            )


def test_console_lists_cost_the_same_for_n_and_3n_rows(
    database: Database, count_queries: CountQueries
) -> None:
    add_user(database, "boss@example.org", Role.ADMIN)
    client = signed_in("boss@example.org")

    def costs() -> dict[str, int]:
        counted = {}
        for path in CONSOLE_LISTS:
            with count_queries(database) as statements:
                response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            counted[path] = len(statements)
        return counted

    more_console_rows(database, SMALL, "a")
    small = costs()
    more_console_rows(database, LARGE - SMALL, "b")
    assert costs() == small
