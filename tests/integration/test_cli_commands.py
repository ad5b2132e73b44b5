"""The command line's remove commands, opt-in mail, region names and bad input.

Each remove asks unless ``--yes``, exits 2 for a record that is not there, and
goes through the domain's audited function, as the console and the API do.
"""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from alerts.cli import EXIT_DECLINED, EXIT_REFUSED, main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.mailer import build_mailer
from alerts.models import (
    ApiToken,
    Article,
    AuditEntry,
    Delivery,
    DeliveryKind,
    Newsletter,
    Role,
    Source,
    Subscriber,
    SubscriberStatus,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from alerts.users import UserError, create_user, remove_user, set_active
from alerts.web.app import create_app
from tests.conftest import RecordedJobs
from tests.integration.smtp_server import SmtpTestServer


def answer(monkeypatch: pytest.MonkeyPatch, typed: str) -> None:
    """What the person at the terminal types at the question."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(typed.encode())))


def audit_actions(database: Database, target_type: str) -> list[tuple[str, str, str | None]]:
    with database.session_scope() as session:
        rows = session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.target_id)
            .where(AuditEntry.target_type == target_type)
            .order_by(AuditEntry.id)
        ).all()
    return [(actor, action, target) for actor, action, target in rows]


def count(database: Database, model: type[object]) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def send_queued(database: Database, recorded_jobs: RecordedJobs) -> None:
    """Run the send jobs the command queued after its commit, as a worker would."""
    ids = [i for job in recorded_jobs for i in job[1].get("delivery_ids", [])]
    assert ids, "nothing was queued"
    mailer = build_mailer(get_settings())
    try:
        send_deliveries(database, ids, mailer, utcnow)
    finally:
        mailer.close()


# --- sources remove -------------------------------------------------------------


def test_sources_remove_asks_keeps_articles_and_audits(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sources", "add", "https://example.org/feed.xml", "--name", "Desk"]) == 0
    with database.session_scope() as session:
        source_id = session.scalars(select(Source.id)).one()
        session.add(
            Article(source_id=source_id, title="t", body="b", fingerprint="f", title_key="k")
        )
    capsys.readouterr()

    answer(monkeypatch, "n\n")
    assert main(["sources", "remove", str(source_id)]) == EXIT_DECLINED
    assert "Remove source 1 (Desk, https://example.org/feed.xml)?" in capsys.readouterr().err
    assert count(database, Source) == 1

    answer(monkeypatch, "y\n")
    assert main(["sources", "remove", str(source_id)]) == 0
    assert capsys.readouterr().out == f"source {source_id}: removed\n"
    assert count(database, Source) == 0
    with database.session_scope() as session:
        assert session.scalars(select(Article.source_id)).all() == [None]
        detail = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "source.delete")
        ).one()
    assert detail == {}
    assert audit_actions(database, "source") == [
        ("cli", "source.add", str(source_id)),
        ("cli", "source.delete", str(source_id)),
    ]

    assert main(["sources", "remove", str(source_id), "--yes"]) == EXIT_REFUSED
    assert capsys.readouterr().err == f"alerts sources remove: no source {source_id}\n"


# --- subscribers remove, add and resend-confirmation -----------------------------


def test_subscribers_remove_by_address_is_the_audited_erasure(
    database: Database,
    recorded_jobs: RecordedJobs,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["subscribers", "add", "leaving@example.org", "--query", "flood", "--confirmed"])
    capsys.readouterr()

    answer(monkeypatch, "")  # a script without --yes: end of input is "no"
    assert main(["subscribers", "remove", "Leaving@Example.org"]) == EXIT_DECLINED
    assert count(database, Subscriber) == 1

    assert main(["subscribers", "remove", "Leaving@Example.org", "--yes"]) == 0
    assert capsys.readouterr().out.endswith("subscriber 1: erased\n")
    assert count(database, Subscriber) == 0
    assert audit_actions(database, "subscriber") == [
        ("cli", "subscriber.add", "1"),
        ("cli", "subscriber.erase", "1"),
    ]

    assert main(["subscribers", "remove", "leaving@example.org", "--yes"]) == EXIT_REFUSED
    assert capsys.readouterr().err == (
        "alerts subscribers remove: no subscriber leaving@example.org\n"
    )
    assert main(["subscribers", "remove", "7", "--yes"]) == EXIT_REFUSED
    assert capsys.readouterr().err == "alerts subscribers remove: no subscriber 7\n"


def test_subscribers_add_mails_the_opt_in_whose_link_confirms(
    database: Database,
    recorded_jobs: RecordedJobs,
    smtp_server: SmtpTestServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ALERTS_SMTP_URL", smtp_server.url)
    get_settings.cache_clear()
    assert main(["subscribers", "add", "new@example.org", "--region", "Sukhumi"]) == 0
    assert capsys.readouterr().out == "subscriber 1: new@example.org (pending)\n"
    send_queued(database, recorded_jobs)

    [message] = smtp_server.received("new@example.org")
    assert message["To"] == "new@example.org"
    body = message.get_body(("plain",))
    assert body is not None
    link = re.search(r"https?://[^/\s]+(/confirm/\S+)", body.get_content())
    assert link is not None
    # As the reader: the link opens a page whose button posts the form back.
    client = TestClient(create_app())
    page = client.get(link.group(1))
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    assert client.post(link.group(1), data={"csrf_token": token.group(1)}).status_code == 200
    with database.session_scope() as session:
        status = session.scalars(select(Subscriber.status)).one()
    assert status is SubscriberStatus.CONFIRMED


def test_subscribers_add_confirmed_mails_nothing(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    assert main(["subscribers", "add", "told@example.org", "--query", "x", "--confirmed"]) == 0
    assert list(recorded_jobs) == []
    assert count(database, Delivery) == 0


def test_resend_confirmation_for_pending_readers_only_and_once_an_hour(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["subscribers", "add", "slow@example.org", "--query", "vote"])
    main(["subscribers", "add", "sure@example.org", "--query", "vote", "--confirmed"])
    capsys.readouterr()

    # The first mail went a minute ago: the sign-up's hourly limit holds here too.
    assert main(["subscribers", "resend-confirmation", "slow@example.org"]) == EXIT_REFUSED
    [line] = capsys.readouterr().err.splitlines()
    assert "a confirmation went to slow@example.org at" in line
    assert "another can go after" in line

    with database.session_scope() as session:
        session.execute(update(Delivery).values(created_at=utcnow() - timedelta(hours=2)))
    assert main(["subscribers", "resend-confirmation", "slow@example.org"]) == 0
    assert capsys.readouterr().out == "subscriber 1: confirmation mail queued to slow@example.org\n"
    with database.session_scope() as session:
        keys = session.scalars(
            select(Delivery.dedup_key)
            .where(Delivery.kind == DeliveryKind.CONFIRMATION)
            .order_by(Delivery.id)
        ).all()
    assert keys == ["confirmation.1", "confirmation.1.1"]
    assert ("cli", "subscriber.resend_confirmation", "1") in audit_actions(database, "subscriber")

    assert main(["subscribers", "resend-confirmation", "sure@example.org"]) == EXIT_REFUSED
    assert capsys.readouterr().err == (
        "alerts subscribers resend-confirmation: sure@example.org is confirmed already: "
        "nothing to confirm\n"
    )
    assert main(["subscribers", "resend-confirmation", "who@example.org"]) == EXIT_REFUSED
    assert "no subscriber who@example.org" in capsys.readouterr().err


def test_show_and_preview_name_regions_for_people(
    database: Database, recorded_jobs: RecordedJobs, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["subscribers", "add", "r@example.org", "--region", "Tskhinvali Region", "--confirmed"])
    capsys.readouterr()
    assert main(["subscribers", "show", "r@example.org"]) == 0
    text = capsys.readouterr().out
    assert "regions South Ossetia" in text
    assert "ge-so" not in text
    assert main(["subscribers", "show", "1", "--json"]) == 0
    [interest] = json.loads(capsys.readouterr().out)["interests"]
    assert (interest["regions"], interest["region_names"]) == (["ge-so"], ["South Ossetia"])

    sample = Path(__file__).parents[2] / "sample"
    assert main(["ingest", str(sample / "articles.jsonl")]) == 0
    capsys.readouterr()
    assert main(["interests", "preview", "--region", "South Ossetia"]) == 0
    listed = capsys.readouterr().out
    assert "[South Ossetia]" in listed
    assert "ge-so" not in listed


# --- webhooks remove ----------------------------------------------------------------


def test_webhooks_remove_deletes_endpoint_and_history_audited(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["webhooks", "add", "https://example.org/hook", "--event", "newsletter.sent"]) == 0
    with database.session_scope() as session:
        endpoint_id = session.scalars(select(WebhookEndpoint.id)).one()
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint_id,
                event_id="e1",
                event="newsletter.sent",
                payload={},
                due_at=utcnow(),
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    capsys.readouterr()

    answer(monkeypatch, "no\n")
    assert main(["webhooks", "remove", str(endpoint_id)]) == EXIT_DECLINED
    assert count(database, WebhookEndpoint) == 1

    assert main(["webhooks", "remove", str(endpoint_id), "--yes"]) == 0
    assert capsys.readouterr().out == f"webhook {endpoint_id}: removed\n"
    assert (count(database, WebhookEndpoint), count(database, WebhookDelivery)) == (0, 0)
    assert audit_actions(database, "webhook") == [
        ("cli", "webhook.add", str(endpoint_id)),
        ("cli", "webhook.delete", str(endpoint_id)),
    ]
    assert main(["webhooks", "remove", str(endpoint_id), "--yes"]) == EXIT_REFUSED
    assert capsys.readouterr().err == f"alerts webhooks remove: no webhook {endpoint_id}\n"


# --- users remove ---------------------------------------------------------------------


def test_users_remove_takes_sessions_and_tokens_but_never_the_last_admin(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["users", "add", "boss@example.org", "--role", "admin", "--generate-password"])
    main(["users", "add", "ed@example.org", "--generate-password"])
    main(["users", "token", "ed@example.org", "--name", "cms"])
    capsys.readouterr()

    assert main(["users", "remove", "boss@example.org", "--yes"]) == EXIT_REFUSED
    assert capsys.readouterr().err == (
        "alerts users remove: boss@example.org is the last active admin; add another admin first\n"
    )

    answer(monkeypatch, "y\n")
    assert main(["users", "remove", "ED@example.org"]) == 0
    assert capsys.readouterr().out == "user 2: removed\n"
    with database.session_scope() as session:
        assert session.scalars(select(User.email)).all() == ["boss@example.org"]
    assert count(database, ApiToken) == 0
    assert ("cli", "user.delete", "2") in audit_actions(database, "user")

    assert main(["users", "remove", "ed@example.org", "--yes"]) == EXIT_REFUSED
    assert capsys.readouterr().err == "alerts users remove: no user ed@example.org\n"


def test_newsletter_test_refuses_a_bad_address_and_sends_nothing(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["newsletters", "create", "--subject", "Weekly"]) == 0
    capsys.readouterr()
    assert main(["newsletters", "test", "1", "--to", "editor@example.org", "--to", "bad"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("alerts newsletters test: ")
    assert "'bad'" in line
    assert count(database, Delivery) == 0


# --- bad input: one line, a non-zero exit, nothing stored -----------------------------


BAD_INPUT = [
    (["sources", "add", "not a url"], 1, "http:// or https://"),
    (["sources", "add", "http://127.0.0.1/feed"], 1, "127.0.0.1"),
    (["sources", "add", "https://example.org/f", "--every", "0"], 1, "poll every"),
    (["sources", "add", "https://example.org/f", "--every", "often"], 1, "poll every"),
    (["sources", "add", "https://example.org/f", "--tag", "x" * 101], 1, "tag"),
    (["subscribers", "add", "no-at-sign", "--query", "x"], 2, "no-at-sign"),
    (["subscribers", "add", "a@example.org", "--language", "fr"], 2, "language 'fr'"),
    (["subscribers", "add", "a@example.org", "--query", "x", "--frequency", "hourly"], 2, "hourly"),
    (["subscribers", "add", "a@example.org", "--query", "(vote"], 2, "query: "),
    (["subscribers", "add", "a@example.org"], 2, "needs a query or at least one region"),
    (["subscribers", "add", "a@example.org", "--region", "Atlantis"], 2, "Atlantis"),
    (["subscribers", "show", "nobody"], 2, "nobody"),
    (["subscribers", "erase", "one"], 2, "invalid int value"),
    (["subscribers", "import", "missing.csv"], 2, "cannot read missing.csv"),
    (["webhooks", "add", "https://example.org/h", "--event", "article.new"], 2, "events must"),
    (["webhooks", "add", "ftp://example.org/h", "--event", "newsletter.sent"], 2, "http(s)"),
    (["webhooks", "remove", "x"], 2, "invalid int value"),
    (["users", "add", "ed@example.org", "--role", "chief", "--generate-password"], 2, "chief"),
    (["users", "add", "not-an-address", "--generate-password"], 2, "not-an-address"),
    (["users", "token", "ghost@example.org", "--name", "cms"], 2, "no active user"),
    (["users", "remove", "", "--yes"], 2, "empty e-mail address"),
    (["users", "add", "short@example.org", "--password-stdin"], 2, "at least 10 characters"),
    (["newsletters", "create", "--subject", "s", "--region", "Atlantis"], 2, "Atlantis"),
    (["newsletters", "create", "--subject", "s", "--pick", "Top=1,x"], 2, "numbers"),
    (["newsletters", "schedule", "1", "--at", "tomorrow"], 2, "YYYY-MM-DD HH:MM"),
    (
        ["newsletters", "schedule", "1", "--at", "2030-01-01 07:00", "--timezone", "Mars/X"],
        2,
        "Mars",
    ),
    (["newsletters", "preview", "9", "--subscriber", "a@example.org"], 2, "no newsletter 9"),
    (["newsletters", "schedule", "9", "--at", "2030-01-01 07:00"], 2, "no newsletter 9"),
    (["newsletters", "send-now", "9"], 2, "no newsletter 9"),
    (["newsletters", "recur", "9", "--cron", "0 7 * * mon"], 2, "no newsletter 9"),
    (["newsletters", "test", "9", "--to", "a@example.org"], 2, "no newsletter 9"),
    (["newsletters", "create", "--subject", "s", "--language", "fr"], 2, "language 'fr'"),
    (["newsletters", "create", "--subject", "s", "--frequency", "hourly"], 2, "frequency 'hourly'"),
    (["newsletters", "create", "--subject", "s", "--intro-file", "gone.md"], 2, "cannot read"),
    (["newsletters", "create", "--subject", "s", "--section", "T=(vote"], 2, "section 1: query"),
    (["newsletters", "create", "--subject", ""], 2, "subject"),
    (["interests", "preview", "(tram"], 2, "position"),
    (["interests", "preview"], 2, "needs a query or at least one region"),
    (["interests", "preview", "tram", "--days", "0"], 2, "1 or more"),
    (["ingest", "missing.xml"], 1, "missing.xml"),
    (["bounces", "parse", "missing.eml"], 1, "cannot read missing.eml"),
    (["regions", "resolve", "Atlantis"], 2, "Atlantis"),
]


@pytest.mark.parametrize(("argv", "code", "reason"), BAD_INPUT, ids=lambda v: str(v)[:60])
def test_bad_input_is_one_clear_line_and_stores_nothing(
    database: Database,
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    reason: str,
) -> None:
    answer(monkeypatch, "too short\n")  # the one --password-stdin reads
    try:
        result: object = main(argv)
    except SystemExit as exit_:  # argparse's refusals
        result = exit_.code
    captured = capsys.readouterr()
    assert result == code
    lines = captured.err.splitlines()
    if argv[:3] != ["interests", "preview", "(tram"]:
        assert len(lines) == 1, captured.err  # the preview draws a query's caret on purpose
    assert reason in captured.err
    assert "Traceback" not in captured.err
    for model in (Source, Subscriber, WebhookEndpoint, User, Delivery, Newsletter):
        assert count(database, model) == 0


def test_remove_user_refuses_the_actor_themselves_and_counts_only_active_admins(
    database: Database,
) -> None:
    """The rule the console would meet too: no self-removal, an active admin stays."""
    now = utcnow()
    with database.session_scope() as session:
        first = create_user(session, "cli", "one@example.org", "a long password", Role.ADMIN, now)
        second = create_user(session, "cli", "two@example.org", "a long password", Role.ADMIN, now)
        with pytest.raises(UserError, match="your own account"):
            remove_user(session, first, first, now)
        set_active(session, "cli", second, False, now)
        with pytest.raises(UserError, match="last active admin"):
            remove_user(session, "cli", first, now)
        remove_user(session, first, second, now)  # a deactivated admin may go
    with database.session_scope() as session:
        assert session.scalars(select(User.email)).all() == ["one@example.org"]
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "user.delete")).one()
        assert (entry.actor, entry.target_id, entry.detail) == (
            "one@example.org",
            str(second.id),
            {"role": "admin"},
        )
