"""Editors' newsletters on SQLite and PostgreSQL: compose, segment, schedule, send once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from sqlalchemy import select, update

from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.outbound import Mailer, send_deliveries
from alerts.delivery.render import MailRenderer
from alerts.delivery.senders import Sender
from alerts.models import Article, DeliveryKind, Newsletter, NewsletterStatus
from alerts.newsletters import (
    NewsletterError,
    cancel,
    compose_newsletters,
    create_newsletter,
    local_moment,
    make_recurring,
    placeholder_links,
    plan_recurring,
    preview,
    progress,
    schedule,
    send_test,
    start_due_issues,
)
from tests.conftest import RecordedJobs
from tests.integration.newsroom import seed_newsroom
from tests.integration.smtp_server import SmtpTestServer

NOW = datetime(2026, 3, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def newsroom(database: Database, recorded_jobs: RecordedJobs) -> Database:
    seed_newsroom(database, NOW)
    return database


def create(database: Database, **fields: object) -> int:
    with database.session_scope() as session:
        return create_newsletter(
            session,
            "test",
            settings=get_settings(),
            now=NOW,
            **fields,  # type: ignore[arg-type]
        ).id


def mailer(sender: Sender) -> Mailer:
    composers = {
        DeliveryKind.NEWSLETTER: compose_newsletters,
        DeliveryKind.TEST: compose_newsletters,
    }
    return Mailer(get_settings(), sender, MailRenderer(), composers)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def test_issue_goes_to_the_segment_once_and_preview_equals_the_mail(
    newsroom: Database, smtp_server: SmtpTestServer
) -> None:
    issue = create(
        newsroom,
        subject="Caucasus briefing for {date}",
        intro_markdown=(
            "Hello **{email}**.\n\n<script>alert(1)</script> [site](javascript:alert(1))"
        ),
        sections=[{"title": "Transport", "query": "tram OR crossing"}],
        audience={"regions": ["Georgia"]},  # Tbilisi and Abkhazia are inside Georgia
    )
    renderer = MailRenderer()
    with newsroom.session_scope() as session:
        previewed = preview(session, issue, "sukhumi@example.org", get_settings(), NOW, renderer)
        schedule(session, issue, NOW + timedelta(minutes=5), "UTC", NOW, actor="system")
    with newsroom.session_scope() as session:
        assert start_due_issues(session, get_settings(), NOW) == []  # not yet
    with newsroom.session_scope() as session:
        ids = start_due_issues(session, get_settings(), NOW + timedelta(minutes=5))
    with newsroom.session_scope() as session:
        assert start_due_issues(session, get_settings(), NOW + timedelta(minutes=6)) == []
    assert len(ids) == 2
    sending = mailer(smtp_server.sender())
    report = send_deliveries(newsroom, ids, sending, lambda: NOW + timedelta(minutes=5))
    assert report.sent == 2
    assert send_deliveries(newsroom, ids, sending, lambda: NOW).sent == 0
    assert sorted(smtp_server.recipients()) == ["sukhumi@example.org", "tbilisi@example.org"]
    sent = {recipient: parse(data) for _, [recipient], data in smtp_server.messages}

    mail = sent["sukhumi@example.org"]
    # {date} is written in each reader's language: this one reads German.
    assert mail["Subject"] == previewed.subject == "Caucasus briefing for 25. März 2026"
    assert sent["tbilisi@example.org"]["Subject"] == "Caucasus briefing for March 25, 2026"
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # The preview is the mail, but for the reader's signed links, which it never holds.
    # They are signed for this reader's link version and the moment of sending.
    signed = {
        name: re.search(
            rf"{re.escape(get_settings().base_url)}/{name}/[\w.-]+(?:\?lang=\w+)?", html
        ).group(0)  # type: ignore[union-attr]
        for name in ("preferences", "unsubscribe")
    }
    disabled = placeholder_links(get_settings())
    assert signed["preferences"] in html
    assert signed["preferences"] not in previewed.html

    def unsigned(part: str) -> str:
        part = part.replace("\r\n", "\n")
        for name in ("preferences", "unsubscribe"):
            part = part.replace(signed[name], disabled[name])
        return part

    assert unsigned(html) == previewed.html.replace("\r\n", "\n")
    assert unsigned(text) == previewed.text.replace("\r\n", "\n")
    assert "<strong>sukhumi@example.org</strong>" in html
    assert "<script>" not in html
    assert 'href="javascript' not in html  # left as inert text
    assert "Tram line approved in Tbilisi" in html
    assert "Inguri crossing reopens" in html
    assert "Metro fares rise" not in html
    with newsroom.session_scope() as session:
        assert progress(session, issue)["sent"] == 2


def test_cancel_before_start_sends_nothing_and_late_changes_are_refused(newsroom: Database) -> None:
    issue = create(newsroom, subject="Weekly", sections=[{"title": "All", "query": "metro"}])
    with newsroom.session_scope() as session:
        schedule(session, issue, NOW + timedelta(hours=1), "UTC", NOW, actor="system")
        assert cancel(session, issue, actor="system")
    with newsroom.session_scope() as session:
        assert start_due_issues(session, get_settings(), NOW + timedelta(hours=2)) == []
        assert session.get_one(Newsletter, issue).status is NewsletterStatus.CANCELLED

    other = create(newsroom, subject="Daily", sections=[{"title": "All", "query": "metro"}])
    with newsroom.session_scope() as session:
        schedule(session, other, NOW + timedelta(minutes=1), "UTC", NOW, actor="system")
    with newsroom.session_scope() as session:
        assert len(start_due_issues(session, get_settings(), NOW + timedelta(minutes=2))) == 3
    with newsroom.session_scope() as session:
        assert not cancel(session, other, actor="system")
        with pytest.raises(NewsletterError, match="too late"):
            schedule(session, other, NOW + timedelta(days=1), "UTC", NOW, actor="system")


@pytest.mark.parametrize(
    ("local", "zone_name", "utc"),
    [
        ("2026-03-29 07:00", "Europe/Berlin", datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
        ("2026-03-28 07:00", "Europe/Berlin", datetime(2026, 3, 28, 6, 0, tzinfo=UTC)),
        ("2026-11-01 07:00", "America/New_York", datetime(2026, 11, 1, 12, 0, tzinfo=UTC)),
        ("2026-10-31 07:00", "America/New_York", datetime(2026, 10, 31, 11, 0, tzinfo=UTC)),
        ("2026-06-01 07:00", "Asia/Tbilisi", datetime(2026, 6, 1, 3, 0, tzinfo=UTC)),
    ],
)
def test_schedule_reads_local_time_in_the_zone_across_dst(
    local: str, zone_name: str, utc: datetime
) -> None:
    assert local_moment(local, zone_name) == utc


def test_recurring_issue_follows_local_time_and_two_clocks_make_one(newsroom: Database) -> None:
    template = create(
        newsroom, subject="Caucasus Weekly", sections=[{"title": "All", "query": "tram"}]
    )
    start = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # a Friday, before Berlin's DST change
    with newsroom.session_scope() as session:
        recurring = make_recurring(
            session,
            template,
            "0 7 * * mon",
            "Europe/Berlin",
            approval_required=True,
            now=start,
            actor="system",
        )
        assert recurring.recurrence_next_at == datetime(2026, 3, 23, 6, 0, tzinfo=UTC)
    moments = [datetime(2026, 3, 23, 6, 1, tzinfo=UTC), datetime(2026, 3, 30, 5, 1, tzinfo=UTC)]
    for moment in moments:
        with newsroom.session_scope() as session:
            first = plan_recurring(session, moment)
        with newsroom.session_scope() as session:
            assert plan_recurring(session, moment) == []  # the second clock
        assert len(first) == 1
    with newsroom.session_scope() as session:
        issues = session.scalars(
            select(Newsletter).where(Newsletter.parent_id == template).order_by(Newsletter.id)
        ).all()
        assert [i.occurrence for i in issues] == [
            datetime(2026, 3, 23, 6, 0, tzinfo=UTC),
            datetime(2026, 3, 30, 5, 0, tzinfo=UTC),  # still 07:00 in Berlin after the change
        ]
        assert {i.status for i in issues} == {NewsletterStatus.AWAITING_APPROVAL}
        # Held issues do not start until approved.
        assert start_due_issues(session, get_settings(), datetime(2026, 4, 1, tzinfo=UTC)) == []


def test_test_send_goes_only_to_the_given_addresses(
    newsroom: Database, smtp_server: SmtpTestServer
) -> None:
    issue = create(newsroom, subject="Draft", sections=[{"title": "All", "query": "tram"}])
    sending = mailer(smtp_server.sender())
    with newsroom.session_scope() as session:
        ids = send_test(session, "test", issue, ["editor@example.org"], get_settings(), NOW)
        with pytest.raises(NewsletterError):
            send_test(session, "test", issue, ["not an address"], get_settings(), NOW)
    report = send_deliveries(newsroom, ids, sending, lambda: NOW)
    assert report.sent == 1
    assert smtp_server.recipients() == ["editor@example.org"]


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"subject": "Hi {name}"}, "unknown placeholder {name}"),
        ({"subject": ""}, "subject"),
        ({"subject": "x", "sections": [{"title": "Bad", "query": "(tram"}]}, "section 1"),
        ({"subject": "x", "sections": [{"title": "Gone", "article_ids": [999]}]}, "no article 999"),
        ({"subject": "x", "audience": {"regions": ["Atlantis"]}}, "Atlantis"),
    ],
)
def test_bad_issues_are_refused_with_a_reason(
    newsroom: Database, fields: dict[str, object], complaint: str
) -> None:
    with pytest.raises(NewsletterError, match=complaint.replace("{", r"\{").replace("(", r"\(")):
        create(newsroom, **fields)


def test_cli_composes_previews_tests_and_lists(
    newsroom: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with newsroom.session_scope() as session:  # the commands run on the real clock
        session.execute(update(Article).values(ingested_at=utcnow()))
    assert (
        main(
            [
                "newsletters",
                "create",
                "--subject",
                "Morning",
                "--section",
                "Transport=tram",
                "--language",
                "en",
            ]
        )
        == 0
    )
    assert "newsletter 1: draft" in capsys.readouterr().out
    assert main(["newsletters", "preview", "1", "--subscriber", "tbilisi@example.org"]) == 0
    assert "Tram line approved in Tbilisi" in capsys.readouterr().out
    assert main(["newsletters", "test", "1", "--to", "editor@example.org"]) == 0
    capsys.readouterr()
    assert main(["newsletters", "schedule", "1", "--at", "2020-01-01 07:00"]) == 2
    assert "passed" in capsys.readouterr().err
    assert main(["newsletters", "cancel", "1"]) == 0
    assert main(["newsletters", "list"]) == 0
    assert "cancelled" in capsys.readouterr().out
