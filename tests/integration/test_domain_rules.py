"""Issue 18: every edge applies the same domain rule, and the command line is audited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.cli import CLI_ACTOR, main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.models import AuditEntry, Newsletter, NewsletterStatus, Source, Subscriber
from alerts.newsletters import NewsletterError, create_newsletter
from tests.factories import SETUP_ACTOR
from tests.integration.test_api import admin_auth, client, editor_auth  # noqa: F401


def audit_rows(database: Database) -> list[tuple[str, str, str | None]]:
    with database.session_scope() as session:
        return [
            (e.actor, e.action, e.target_id)
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.actor != SETUP_ACTOR).order_by(AuditEntry.id)
            )
        ]


def draft(database: Database) -> int:
    with database.session_scope() as session:
        issue = create_newsletter(
            session, "test", subject="Weekly", settings=get_settings(), now=utcnow()
        )
        return issue.id


def test_cli_recur_refuses_a_sent_issue_and_audits_a_draft(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    sent, fresh = draft(database), draft(database)
    with database.session_scope() as session:
        session.get_one(Newsletter, sent).status = NewsletterStatus.SENT
    assert main(["newsletters", "recur", str(sent), "--cron", "0 7 * * mon"]) == 2
    assert "only a draft" in capsys.readouterr().err
    with database.session_scope() as session:
        assert session.get_one(Newsletter, sent).recurrence is None
    assert main(["newsletters", "recur", str(fresh), "--cron", "0 7 * * mon"]) == 0
    assert audit_rows(database) == [(CLI_ACTOR, "newsletter.recur", str(fresh))]


def test_cli_cancel_and_erase_leave_audit_rows(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    issue = draft(database)
    assert main(["newsletters", "cancel", str(issue)]) == 0
    assert (
        main(["subscribers", "add", "reader@example.org", "--query", "flood", "--confirmed"]) == 0
    )
    with database.session_scope() as session:
        reader = session.scalars(select(Subscriber.id)).one()
    assert main(["subscribers", "erase", str(reader)]) == 0
    assert main(["subscribers", "erase", str(reader)]) == 2
    with database.session_scope() as session:
        assert session.scalars(select(Subscriber)).all() == []
    assert audit_rows(database) == [
        (CLI_ACTOR, "newsletter.cancel", str(issue)),
        (CLI_ACTOR, "subscriber.add", str(reader)),
        (CLI_ACTOR, "subscriber.erase", str(reader)),
    ]
    assert "reader@example.org" not in repr(audit_rows(database))


def test_a_week_between_polls_is_refused_by_the_api_and_the_cli(
    database: Database,
    client: TestClient,  # noqa: F811
    editor_auth: dict[str, str],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    week = str(7 * 24 * 60)
    url = "https://news.example.org/feed.xml"
    refused = client.post(
        "/api/sources", headers=editor_auth, json={"url": url, "poll_minutes": int(week)}
    )
    assert refused.status_code == 422
    assert "poll every" in refused.json()["detail"]
    assert main(["sources", "add", url, "--every", week]) == 1
    assert "poll every" in capsys.readouterr().err
    tags = [f"tag {n}" for n in range(21)]
    too_many_tags = client.post(
        "/api/sources", headers=editor_auth, json={"url": url, "default_tags": tags}
    )
    assert too_many_tags.status_code == 422
    assert main(["sources", "add", url, "--every", "60", "--tag", "News"]) == 0
    duplicate = client.post("/api/sources", headers=editor_auth, json={"url": url})
    assert duplicate.status_code == 409
    with database.session_scope() as session:
        [source] = session.scalars(select(Source)).all()
        assert (source.poll_minutes, source.default_tags) == (60, ["News"])
    patched = client.patch(
        f"/api/sources/{source.id}", headers=editor_auth, json={"poll_minutes": int(week)}
    )
    assert patched.status_code == 422
    assert audit_rows(database) == [(CLI_ACTOR, "source.add", str(source.id))]


def test_language_xx_is_refused_at_every_edge(
    database: Database,
    client: TestClient,  # noqa: F811
    admin_auth: dict[str, str],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    wanted = {"email": "reader@example.org", "query": "flood", "confirmed": True}
    api = client.post("/api/subscribers", headers=admin_auth, json={**wanted, "language": "xx"})
    assert api.status_code == 422
    assert "language" in api.json()["detail"]
    cli = ["subscribers", "add", "reader@example.org", "--query", "flood", "--language", "xx"]
    assert main(cli) == 2
    assert "language 'xx'" in capsys.readouterr().err
    created = client.post("/api/subscribers", headers=admin_auth, json={**wanted, "language": "DE"})
    assert created.status_code == 201
    assert created.json()["language"] == "de"
    patched = client.patch(
        f"/api/subscribers/{created.json()['id']}", headers=admin_auth, json={"language": "xx"}
    )
    assert patched.status_code == 422
    with database.session_scope() as session:
        assert session.scalars(select(Subscriber.language)).all() == ["de"]


@pytest.mark.parametrize(
    ("audience", "refusal"),
    [
        ({"languages": ["fr"]}, "language 'fr' is not one of"),
        ({"frequencies": ["hourly"]}, "frequency 'hourly' is not one of"),
    ],
)
def test_a_segment_takes_only_what_readers_can_have(
    database: Database, audience: dict[str, list[str]], refusal: str
) -> None:
    # The one rule for editors' forms, the API and the CLI alike.
    with database.session_scope() as session, pytest.raises(NewsletterError, match=refusal):
        create_newsletter(
            session,
            SETUP_ACTOR,
            subject="Weekly",
            audience=audience,
            settings=get_settings(),
            now=utcnow(),
        )
    assert main(["newsletters", "create", "--subject", "Weekly", "--language", "fr"]) == 2
    with database.session_scope() as session:
        assert session.scalars(select(Newsletter)).all() == []
