"""Alerts and digests through the ledger, on SQLite and PostgreSQL.

Every mail goes over SMTP to the aiosmtpd server on loopback, and what the
tests read back is what that server accepted.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from alerts.alerting import compose_alerts, process_new_articles
from alerts.config import Settings, get_settings
from alerts.db import Database
from alerts.delivery.ledger import sweep
from alerts.delivery.outbound import Mailer, send_deliveries
from alerts.delivery.render import MailRenderer
from alerts.delivery.verp import delivery_from_address
from alerts.digest import compose_digests, plan_due_digests
from alerts.matching.service import IndexCache
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from alerts.regions import default_gazetteer
from alerts.subscribers import NewSubscriber, add_subscriber, unsubscribe
from alerts.tick import run_tick
from tests.conftest import CountQueries, RecordedJobs
from tests.integration.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Desk:
    """A small newsroom: subscribers, articles, matching and sending in one place."""

    def __init__(self, database: Database, jobs: RecordedJobs, smtp: SmtpTestServer) -> None:
        self.database = database
        self.jobs = jobs
        self.smtp = smtp
        self.settings: Settings = get_settings()
        self.cache = IndexCache(default_gazetteer(), self.settings)
        self.sender = smtp.sender()
        self.mailer = Mailer(
            settings=self.settings,
            sender=self.sender,
            renderer=MailRenderer(),
            composers={DeliveryKind.ALERT: compose_alerts, DeliveryKind.DIGEST: compose_digests},
        )
        self.now = NOW

    def subscribe(self, email: str, **fields: Any) -> int:
        fields.setdefault("confirmed", True)
        with self.database.session_scope() as session:
            return add_subscriber(
                session, NewSubscriber(email=email, **fields), self.settings, self.now
            ).id

    def publish(self, title: str, body: str, **fields: Any) -> int:
        with self.database.session_scope() as session:
            article = Article(
                title=title,
                body=body,
                lead=body.split("\n\n")[0],
                fingerprint=f"fp-{title}-{body}"[:64],
                title_key=f"tk-{title}"[:64],
                language=fields.pop("language", "en"),
                ingested_at=self.now,
                **fields,
            )
            session.add(article)
            session.flush()
            article_id = article.id
        with self.database.session_scope() as session:
            process_new_articles(session, [article_id], self.cache, self.settings, self.now)
        return article_id

    def queued_sends(self) -> list[int]:
        return [i for job in self.jobs.named("send_alerts") for i in job["delivery_ids"]]

    def send(self, ids: list[int] | None = None) -> Any:
        return send_deliveries(
            self.database,
            self.queued_sends() if ids is None else ids,
            self.mailer,
            lambda: self.now,
        )

    def plan_digests(self) -> list[int]:
        with self.database.session_scope() as session:
            return plan_due_digests(session, self.settings, self.now)

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        """What the SMTP server accepted, in order (for ``to`` only, if given)."""
        return self.smtp.received(to)

    def deliveries(self) -> list[Delivery]:
        with self.database.session_scope() as session:
            return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture
def desk(database: Database, recorded_jobs: RecordedJobs, smtp_server: SmtpTestServer) -> Desk:
    return Desk(database, recorded_jobs, smtp_server)


def bodies(message: EmailMessage) -> tuple[str, str]:
    """Text (with highlight stars removed) and HTML parts."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content().replace("*", ""), html.get_content()


def test_alert_goes_out_once_with_every_header(desk: Desk) -> None:
    desk.subscribe("reader@example.org", query="tram", frequency="immediate")
    desk.subscribe("digest@example.org", query="tram", frequency="daily")
    article_id = desk.publish(
        "Tbilisi approves a tram line", "The council voted for a new tram line.\n\nMore later."
    )
    report = desk.send()
    assert report.sent == 1
    [message] = desk.messages()
    assert message["To"] == "reader@example.org"
    assert "tram" in message["Subject"].lower()
    assert message["Message-ID"].startswith("<")
    assert message["Date"]
    assert message["List-Id"]
    assert "https://" in message["List-Unsubscribe"] or "http://" in message["List-Unsubscribe"]
    assert "mailto:" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = bodies(message)
    assert "Tbilisi approves a tram line" in text
    assert "*tram*" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<mark>tram</mark>" in html

    # A redelivered match task and a redelivered send task change nothing.
    with desk.database.session_scope() as session:
        assert (
            process_new_articles(session, [article_id], desk.cache, desk.settings, desk.now) == []
        )
    assert desk.send().sent == 0
    assert len(desk.smtp.messages) == 1


def test_mail_says_what_it_is_and_bounces_come_back_to_the_delivery(
    database: Database,
    recorded_jobs: RecordedJobs,
    smtp_server: SmtpTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALERTS_BOUNCE_DOMAIN", "bounces.news.example.org")
    monkeypatch.setenv("ALERTS_POSTAL_ADDRESS", "Caucasus Desk\n1 Press Row, Tbilisi")
    get_settings.cache_clear()
    desk = Desk(database, recorded_jobs, smtp_server)
    desk.subscribe("reader@example.org", query="tram", frequency="immediate")
    desk.subscribe("digest@example.org", query="tram", frequency="daily")
    desk.publish("Tbilisi approves a tram line", "The council voted for a new tram line.")
    desk.now = NOW + timedelta(days=1)  # sent a day after it was promised
    desk.send()
    desk.plan_digests()
    desk.send([d.id for d in desk.deliveries() if d.kind is DeliveryKind.DIGEST])
    secret = desk.settings.resolved_secret_key
    by_kind = {}
    assert len(desk.smtp.messages) == 2
    for envelope_from, [recipient], data in desk.smtp.messages:
        delivery = delivery_from_address(envelope_from, secret)
        assert delivery is not None, envelope_from
        assert envelope_from.endswith("@bounces.news.example.org")
        message = BytesParser(policy=policy.default).parsebytes(data)
        by_kind[recipient] = message
        unsubscribe_mailto = message["List-Unsubscribe"].split("mailto:")[1].rstrip(">")
        assert delivery_from_address(unsubscribe_mailto, secret) == delivery
        sent_at = parsedate_to_datetime(message["Date"])
        assert abs(sent_at - datetime.now(UTC)) < timedelta(minutes=5)  # when it left
        assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
        text, html = bodies(message)  # CAN-SPAM: the sender's address, on one line
        assert "Caucasus Desk 1 Press Row, Tbilisi" in text
        assert "Caucasus Desk 1 Press Row, Tbilisi" in html
    alert, digest = by_kind["reader@example.org"], by_kind["digest@example.org"]
    assert alert["Auto-Submitted"] == digest["Auto-Submitted"] == "auto-generated"
    assert (alert["Precedence"], digest["Precedence"]) == (None, "bulk")
    assert (alert["Feedback-ID"], digest["Feedback-ID"]) == (
        "alert:alert:alerts",
        "digest:digest:alerts",
    )


def test_throttled_alerts_roll_into_the_next_digest(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk.settings, "alert_max_per_hour", 1)
    desk.subscribe("busy@example.org", query="flood", frequency="immediate", send_at="10:00")
    desk.publish("Flood in Vladikavkaz", "A flood hit the city.")
    desk.publish("Second flood warning", "Another flood is expected.")
    assert desk.send().sent == 1
    [alert] = desk.messages()
    assert "Flood in Vladikavkaz" in alert["Subject"]

    desk.now = NOW + timedelta(hours=2)  # 11:00 UTC: past the 10:00 slot
    assert len(desk.plan_digests()) == 1
    desk.send([d.id for d in desk.deliveries() if d.kind is DeliveryKind.DIGEST])
    digest = desk.messages()[-1]
    text, _ = bodies(digest)
    assert "Second flood warning" in text
    assert "Flood in Vladikavkaz" not in text


def test_quiet_hours_hold_an_alert_until_they_end(desk: Desk) -> None:
    subscriber_id = desk.subscribe("sleepy@example.org", query="flood", frequency="immediate")
    with desk.database.session_scope() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .values(quiet_start=time(8, 0), quiet_end=time(10, 0))
        )
    desk.publish("Flood in Vladikavkaz", "A flood hit the city.")
    assert desk.queued_sends() == []
    [held] = desk.deliveries()
    assert held.due_at == NOW.replace(hour=10)
    stuck, requeue = timedelta(minutes=10), timedelta(minutes=5)
    with desk.database.session_scope() as session:
        assert (
            sweep(session, NOW + timedelta(minutes=30), stuck_after=stuck, requeue_after=requeue)
            == []
        )
    with desk.database.session_scope() as session:
        due = sweep(session, NOW + timedelta(hours=1), stuck_after=stuck, requeue_after=requeue)
    assert due == [held.id]
    desk.now = NOW + timedelta(hours=1)
    assert desk.send(due).sent == 1


def test_digest_is_planned_once_per_window_and_empty_ones_are_skipped(desk: Desk) -> None:
    desk.subscribe("daily@example.org", query="referendum", frequency="daily", send_at="08:00")
    desk.subscribe("quiet@example.org", query="hovercraft", frequency="daily", send_at="08:00")
    desk.publish(
        "Referendum planned in South Ossetia",
        "Officials announced a referendum on the region's status.\n\nThe vote is set for spring.",
    )
    desk.now = NOW + timedelta(hours=24)  # past the next 08:00 UTC slot
    planned = desk.plan_digests()
    assert len(planned) == 2
    assert desk.plan_digests() == []  # the same run twice promises nothing more
    report = desk.send(planned)
    assert (report.sent, report.skipped) == (1, 1)
    [message] = desk.messages()
    assert message["To"] == "daily@example.org"
    text, html = bodies(message)
    assert "Referendum planned in South Ossetia" in text
    assert "<mark>referendum</mark>" in html.lower() or "<mark>Referendum</mark>" in html
    assert desk.send(planned).sent == 0


def test_a_served_schedule_is_planned_again_for_a_reader_whose_window_is_older(
    desk: Desk,
) -> None:
    """The planner skips a schedule whose readers all had the latest slot; one
    reader left behind (no window yet, or an older one) brings it back."""
    desk.subscribe("served@example.org", query="tram", send_at="08:00")
    desk.now = NOW + timedelta(hours=24)
    assert len(desk.plan_digests()) == 1
    fresh = desk.subscribe("fresh@example.org", query="tram", send_at="08:00")
    behind = desk.subscribe("behind@example.org", query="tram", send_at="08:00")
    assert desk.plan_digests() == []  # the newcomers' windows start now
    for reader, window_start in ((fresh, None), (behind, NOW)):
        with desk.database.session_scope() as session:
            session.execute(
                update(Subscriber)
                .where(Subscriber.id == reader)
                .values(last_digest_at=window_start)
            )
        planned = desk.plan_digests()
        assert [d.subscriber_id for d in desk.deliveries() if d.id in planned] == [reader]


def test_alerts_and_digests_are_queued_apart_also_when_the_sweeper_requeues(
    desk: Desk,
) -> None:
    desk.subscribe("now@example.org", query="referendum", frequency="immediate")
    desk.subscribe("daily@example.org", query="referendum", frequency="daily", send_at="08:00")
    desk.publish("Referendum planned", "Officials announced a referendum.")
    [alert] = desk.queued_sends()
    desk.jobs.clear()
    desk.now = NOW + timedelta(hours=24)
    with desk.database.session_scope() as session:
        report = run_tick(session, desk.settings, desk.now)
    digests = report.digests
    assert digests
    # The alert's task was lost (its row is queued and untouched for hours).
    assert report.recovered == [alert]
    assert desk.jobs.named("send_alerts") == [{"delivery_ids": [alert]}]
    assert desk.jobs.named("send_deliveries") == [{"delivery_ids": digests}]
    desk.jobs.clear()
    later = desk.now + timedelta(seconds=desk.settings.requeue_after_seconds + 1)
    with desk.database.session_scope() as session:
        report = run_tick(session, desk.settings, later)
    assert report.recovered == sorted([alert, *digests])
    assert desk.jobs.named("send_alerts") == [{"delivery_ids": [alert]}]
    assert desk.jobs.named("send_deliveries") == [{"delivery_ids": digests}]


def test_same_story_from_two_sources_is_one_digest_entry(desk: Desk) -> None:
    desk.subscribe("daily@example.org", query="pass", frequency="daily", send_at="08:00")
    head = desk.publish("Mountain pass reopens", "The pass reopened.", source_name="Desk One")
    desk.publish(
        "Mountain pass reopens",
        "Lorries crossed the pass again.",
        source_name="Desk Two",
        duplicate_of_id=head,
    )
    desk.now = NOW + timedelta(hours=24)
    desk.send(desk.plan_digests())
    text, _ = bodies(desk.messages()[0])
    assert text.count("Mountain pass reopens") == 1
    assert "Desk Two" in text


@pytest.mark.parametrize(
    ("zone", "first_day"),
    [
        ("Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2026, 10, 23, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 6, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 10, 30, tzinfo=UTC)),
        ("Australia/Sydney", datetime(2026, 4, 2, tzinfo=UTC)),
        ("Asia/Tbilisi", datetime(2026, 3, 27, tzinfo=UTC)),
    ],
)
def test_daily_windows_across_dst_are_one_per_local_day_at_local_send_time(
    desk: Desk, zone: str, first_day: datetime
) -> None:
    desk.now = first_day
    desk.subscribe("tz@example.org", query="anything", frequency="daily", timezone=zone)
    promised: list[int] = []
    step = timedelta(minutes=20)
    while desk.now < first_day + timedelta(days=4):
        desk.now += step
        promised.extend(desk.plan_digests())
    digests = [d for d in desk.deliveries() if d.kind is DeliveryKind.DIGEST]
    assert len(digests) == len(promised)
    local_days = [
        datetime.fromisoformat(d.payload["until"]).astimezone(ZoneInfo(zone)) for d in digests
    ]
    assert [moment.time() for moment in local_days] == [time(7, 0)] * len(local_days)
    assert len({moment.date() for moment in local_days}) == len(local_days)
    assert len(local_days) in (3, 4)
    windows = [
        (datetime.fromisoformat(d.payload["since"]), datetime.fromisoformat(d.payload["until"]))
        for d in digests
    ]
    for (_, previous_end), (next_start, _) in itertools.pairwise(windows):
        assert previous_end == next_start  # windows tile time: nothing lost, nothing twice


def test_weekly_digest_on_the_chosen_weekday(desk: Desk) -> None:
    subscriber_id = desk.subscribe(
        "weekly@example.org", query="anything", frequency="weekly", timezone="Asia/Tbilisi"
    )
    with desk.database.session_scope() as session:
        session.execute(
            update(Subscriber).where(Subscriber.id == subscriber_id).values(weekly_day=0)
        )
    promised = []
    for hours in range(0, 24 * 15, 1):
        desk.now = NOW + timedelta(hours=hours)
        promised.extend(desk.plan_digests())
    digests = [d for d in desk.deliveries() if d.kind is DeliveryKind.DIGEST]
    assert len(digests) == 2
    for digest in digests:
        until = datetime.fromisoformat(digest.payload["until"]).astimezone(ZoneInfo("Asia/Tbilisi"))
        assert (until.weekday(), until.time()) == (0, time(7, 0))


def test_temporary_failure_retries_and_permanent_failure_bounces_and_suppresses(
    desk: Desk,
) -> None:
    desk.subscribe("flaky@example.org", query="flood", frequency="immediate")
    desk.subscribe("gone@example.org", query="flood", frequency="immediate")
    desk.subscribe("fine@example.org", query="flood", frequency="immediate")
    desk.smtp.rcpt_replies["flaky@example.org"] = ["451 4.3.0 try later"]  # once
    desk.smtp.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"  # always
    desk.publish("Flood in Vladikavkaz", "A flood hit the city.")
    report = desk.send()
    assert (report.sent, report.deferred, report.bounced) == (1, 1, 1)

    by_recipient = {d.recipient: d for d in desk.deliveries()}
    assert by_recipient["flaky@example.org"].state is DeliveryState.QUEUED
    assert by_recipient["flaky@example.org"].due_at > NOW
    assert by_recipient["gone@example.org"].state is DeliveryState.BOUNCED
    assert "550" in (by_recipient["gone@example.org"].reason or "")
    with desk.database.session_scope() as session:
        assert session.scalar(select(Suppression.email)) == "gone@example.org"
        status = session.scalar(
            select(Subscriber.status).where(Subscriber.email == "gone@example.org")
        )
        assert status is SubscriberStatus.BOUNCED

    desk.now = NOW + timedelta(hours=1)
    with desk.database.session_scope() as session:
        due = sweep(
            session, desk.now, stuck_after=timedelta(minutes=10), requeue_after=timedelta(minutes=5)
        )
    assert due == [by_recipient["flaky@example.org"].id]
    assert desk.send(due).sent == 1
    flaky = [m for m in desk.messages() if m["To"] == "flaky@example.org"]
    assert len(flaky) == 1
    assert flaky[0]["Message-ID"] == by_recipient["flaky@example.org"].message_id

    desk.publish("Another flood", "More water.")
    desk.send()
    assert [m["To"] for m in desk.messages()].count("gone@example.org") == 0


def test_unsubscribed_and_suppressed_readers_are_never_mailed(desk: Desk) -> None:
    leaving = desk.subscribe("leaving@example.org", query="flood", frequency="immediate")
    desk.subscribe("blocked@example.org", query="flood", frequency="immediate")
    desk.subscribe("pending@example.org", query="flood", frequency="immediate", confirmed=False)
    with desk.database.session_scope() as session:
        session.add(Suppression(email="blocked@example.org", reason="manual", created_at=NOW))
    desk.publish("Flood in Vladikavkaz", "A flood hit the city.")
    with desk.database.session_scope() as session:
        unsubscribe(session, leaving, NOW)
    report = desk.send()
    assert report.sent == 0
    assert desk.smtp.messages == []
    assert desk.smtp.ehlo_count == 0  # not even a connection
    assert {d.state for d in desk.deliveries()} <= {DeliveryState.SUPPRESSED}


def test_hostile_article_title_is_escaped_in_mail(desk: Desk) -> None:
    desk.subscribe("reader@example.org", query="flood", frequency="immediate")
    desk.publish('<script>alert(1)</script> flood "><img src=x onerror=alert(1)>', "A flood.")
    desk.send()
    [message] = desk.messages()
    _, html = bodies(message)
    assert "<script>alert(1)</script>" not in html
    assert "onerror=alert(1)>" not in html
    assert "\n" not in message["Subject"]


def test_digest_composition_does_a_fixed_number_of_queries(
    desk: Desk, count_queries: CountQueries
) -> None:
    for n in range(30):
        desk.subscribe(f"reader{n}@example.org", query="flood OR pass", frequency="daily")
    for n in range(5):
        desk.publish(f"Flood report {n}", f"Water rose in district {n}.")
    desk.now = NOW + timedelta(hours=24)
    planned = desk.plan_digests()
    assert len(planned) == 30
    with desk.database.session_scope() as session:
        deliveries = list(session.scalars(select(Delivery).where(Delivery.id.in_(planned))))
        with count_queries(desk.database) as statements:
            contexts = compose_digests(session, deliveries, desk.settings, desk.now)
    assert len(contexts) == 30
    assert all(ctx["total"] == 5 for _, ctx in contexts.values())
    assert len(statements) <= 5, statements


def test_count_of_digest_rows_matches_subscribers(desk: Desk) -> None:
    for n in range(12):
        desk.subscribe(f"r{n}@example.org", query="flood", frequency="daily", send_at="08:00")
    desk.now = NOW + timedelta(hours=24)
    desk.plan_digests()
    desk.plan_digests()
    with desk.database.session_scope() as session:
        assert session.scalar(select(func.count(Delivery.id))) == 12


def test_a_german_reader_gets_a_german_digest_in_local_time(desk: Desk) -> None:
    # 02:00 in Tbilisi is 22:00 UTC the day before: the digest's day is Tbilisi's.
    desk.subscribe(
        "leser@example.org",
        query="flood",
        frequency="daily",
        send_at="02:00",
        timezone="Asia/Tbilisi",
        language="de",
    )
    desk.publish("Flood in Vladikavkaz", "A flood hit the city.")
    desk.now = NOW + timedelta(hours=24)
    planned = desk.plan_digests()
    assert desk.send(planned).sent == 1
    [message] = desk.messages()
    assert message["Subject"] == (
        "Tägliche Übersicht, 27. November 2026: 1 Artikel zu Ihren Interessen"
    )
    assert "lang=de" in message["List-Unsubscribe"]
    text, html = bodies(message)
    assert '<html lang="de">' in html
    assert "1 Artikel passt zu Ihren Interessen." in text
    assert "26.11.2026, 13:00" in text  # ingested 09:00 UTC, 13:00 in Tbilisi
    assert "Warum: Treffer: „flood“" in text
    assert "Einstellungen verwalten:" in text
    assert "Flood in Vladikavkaz" in text  # articles are never translated
    for english in ("Daily digest", "Why:", "Manage your preferences", "UTC"):
        assert english not in text


def test_a_russian_reader_gets_a_russian_alert(desk: Desk) -> None:
    desk.subscribe(
        "chitatel@example.org",
        query="flood",
        frequency="immediate",
        timezone="Europe/Moscow",
        language="ru",
    )
    desk.subscribe("reader@example.org", query="flood", frequency="immediate")
    desk.publish("Flood in Vladikavkaz", "A flood hit the city.")
    assert desk.send().sent == 2
    [russian] = desk.messages("chitatel@example.org")
    [english] = desk.messages("reader@example.org")
    assert russian["Subject"] == "Оповещение: Flood in Vladikavkaz"
    assert english["Subject"] == "Alert: Flood in Vladikavkaz"
    text, _ = bodies(russian)
    assert "Новая статья по вашим интересам" in text
    # 09:00 UTC is 12:00 in Moscow (the entry line folds CLDR's narrow spaces to plain ones).
    assert "26 нояб. 2026 г., 12:00" in text
    english_text, _ = bodies(english)
    assert "New article matching your interests" in english_text
    assert "Nov 26, 2026, 9:00" in english_text
