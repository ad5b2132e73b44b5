"""The admin console over HTTP, on SQLite and PostgreSQL: roles, sessions, CSRF,
audit, CSV, suppressions, users, and escaping of everything people type."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from alerts.bounces import BounceReport, record
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.metrics import INGEST_ENTRIES
from alerts.models import (
    Article,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Role,
    Source,
    Subscriber,
    SubscriberStatus,
    Suppression,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebSession,
)
from alerts.subscribers import NewSubscriber, add_subscriber
from alerts.users import LOGIN_FREE_FAILURES, create_user
from alerts.web.app import create_app
from alerts.web.security import SESSION_COOKIE
from alerts.webhooks import emit
from tests.factories import audit_actions

ADMIN = "boss@example.org"
EDITOR = "writer@example.org"
PASSWORD = "correct horse battery"
SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, ATTRIBUTE_BREAK)
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')

ADMIN_PAGES = (
    "/admin/subscribers",
    "/admin/subscribers/1",
    "/admin/subscribers/1/delete",
    "/admin/subscribers/export.csv",
    "/admin/subscribers/import",
    "/admin/suppressions",
    "/admin/users",
    "/admin/audit",
    "/admin/webhooks",
)
ADMIN_POSTS = (
    "/admin/subscribers/1",
    "/admin/subscribers/1/suspend",
    "/admin/subscribers/1/unsuspend",
    "/admin/subscribers/1/reactivate",
    "/admin/subscribers/1/delete",
    "/admin/suppressions",
    "/admin/suppressions/1/delete",
    "/admin/users",
    "/admin/users/1/role",
    "/admin/users/1/deactivate",
    "/admin/users/1/activate",
    "/admin/users/1/reset-password",
    "/admin/webhooks",
    "/admin/webhooks/1/deactivate",
)


def add_user(database: Database, email: str, role: Role, password: str = PASSWORD) -> int:
    with database.session_scope() as session:
        return create_user(session, "test", email, password, role, utcnow()).id


def add_reader(database: Database, email: str, query: str = "flood", confirmed: bool = True) -> int:
    with database.session_scope() as session:
        data = NewSubscriber(email=email, query=query, confirmed=confirmed, consent_source="test")
        return add_subscriber(session, data, get_settings(), utcnow()).id


def form_token(client: TestClient, path: str = "/admin/login") -> str:
    page = client.get(path)
    match = TOKEN_FIELD.search(page.text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> Response:
    token = form_token(client)
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def signed_in(email: str, password: str = PASSWORD) -> TestClient:
    client = TestClient(create_app())
    response = log_in(client, email, password)
    assert response.status_code == 303, response.text
    return client


def post(client: TestClient, path: str, **fields: str) -> Response:
    """A form post with this browser's CSRF token, as the console's forms send it."""
    return client.post(
        path,
        data={**fields, "csrf_token": form_token(client, "/admin/account")},
        follow_redirects=False,
    )


def status_of(database: Database, subscriber_id: int) -> SubscriberStatus | None:
    with database.session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        return subscriber.status if subscriber else None


def test_strangers_are_sent_to_the_login_page(database: Database) -> None:
    client = TestClient(create_app())
    token = form_token(client)
    for path in ("/admin", "/admin/account", *ADMIN_PAGES):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next=")
    for path in ADMIN_POSTS:
        response = client.post(path, data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login")
    assert client.get("/admin/login").status_code == 200


def test_editors_sign_in_but_are_refused_admin_actions(database: Database) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    reader = add_reader(database, "reader@example.org")
    client = signed_in(EDITOR)
    assert client.get("/admin").status_code == 200
    assert "editor" in client.get("/admin").text
    assert client.get("/admin/account").status_code == 200
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 403, path
    for path in ADMIN_POSTS:
        assert post(client, path, email="x@example.org", role="admin").status_code == 403, path
    upload = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": form_token(client, "/admin/account")},
        files={"file": ("readers.csv", b"email\nnew@example.org\n", "text/csv")},
    )
    assert upload.status_code == 403
    assert status_of(database, reader) is SubscriberStatus.CONFIRMED
    assert audit_actions(database) == []


def test_login_answers_alike_for_unknown_and_wrong_and_throttles(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = TestClient(create_app())
    wrong = log_in(client, ADMIN, "not the password")
    unknown = log_in(client, "nobody@example.org", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "do not match an account" in wrong.text
    assert wrong.text.replace(ADMIN, "X") == unknown.text.replace("nobody@example.org", "X")

    for _ in range(LOGIN_FREE_FAILURES - 1):
        log_in(client, ADMIN, "still wrong")
    throttled = log_in(client, ADMIN, PASSWORD)
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text
    # Another account is not locked by guesses at this one.
    add_user(database, EDITOR, Role.EDITOR)
    assert log_in(TestClient(create_app()), EDITOR).status_code == 303


def test_login_redirects_only_inside_the_console(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    for target, expected in (
        ("/admin/users", "/admin/users"),
        ("//evil.example", "/admin"),
        ("https://evil.example/admin", "/admin"),
    ):
        # A fresh browser each time: a sign-in rotates the CSRF token of the page before.
        client = TestClient(create_app())
        token = form_token(client)
        response = client.post(
            "/admin/login",
            data={"email": ADMIN, "password": PASSWORD, "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def test_admin_searches_views_edits_suspends_and_erases(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    first = add_reader(database, "anna@example.org")
    add_reader(database, "boris@example.net", confirmed=False)
    client = signed_in(ADMIN)

    found = client.get("/admin/subscribers", params={"q": "EXAMPLE.ORG"})
    assert "anna@example.org" in found.text
    assert "boris@example.net" not in found.text
    pending = client.get("/admin/subscribers", params={"status": "pending"})
    assert "boris@example.net" in pending.text
    assert "anna@example.org" not in pending.text
    # A % typed into the search is a character, not a wildcard.
    assert "anna@example.org" not in client.get("/admin/subscribers", params={"q": "%"}).text

    view = client.get(f"/admin/subscribers/{first}")
    assert view.status_code == 200
    assert "flood" in view.text

    edited = post(
        client,
        f"/admin/subscribers/{first}",
        frequency="weekly",
        timezone="Asia/Tbilisi",
        send_at="06:30",
        language="de",
        name="Anna",
    )
    assert edited.status_code == 303
    refused = post(client, f"/admin/subscribers/{first}", timezone="Mars/Olympus")
    assert refused.status_code == 422
    assert "Mars/Olympus" in html.unescape(refused.text)
    with database.session_scope() as session:
        subscriber = session.get(Subscriber, first)
        assert subscriber is not None
        assert (subscriber.frequency.value, subscriber.timezone, subscriber.language) == (
            "weekly",
            "Asia/Tbilisi",
            "de",
        )

    assert post(client, f"/admin/subscribers/{first}/suspend").status_code == 303
    assert status_of(database, first) is SubscriberStatus.SUSPENDED
    assert 'id="subscriber-status">suspended<' in client.get(f"/admin/subscribers/{first}").text
    post(client, f"/admin/subscribers/{first}/unsuspend")
    assert status_of(database, first) is SubscriberStatus.CONFIRMED

    assert "Erase anna@example.org?" in client.get(f"/admin/subscribers/{first}/delete").text
    assert post(client, f"/admin/subscribers/{first}/delete").status_code == 303
    assert status_of(database, first) is None
    assert client.get(f"/admin/subscribers/{first}").status_code == 404

    assert audit_actions(database) == [
        ("subscriber.edit", "subscriber", str(first)),
        ("subscriber.suspend", "subscriber", str(first)),
        ("subscriber.unsuspend", "subscriber", str(first)),
        ("subscriber.erase", "subscriber", str(first)),
    ]
    log = client.get("/admin/audit").text
    assert "subscriber.erase" in log
    assert ADMIN in log
    assert "anna@example.org" not in log  # the log names the erased reader by id only


def test_csv_export_has_consent_and_import_reports_bad_rows(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    add_reader(database, "anna@example.org", query="referendum")
    client = signed_in(ADMIN)

    export = client.get("/admin/subscribers/export.csv")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows[0]["email"] == "anna@example.org"
    assert rows[0]["query"] == "referendum"
    assert rows[0]["consent_source"] == "test"
    assert rows[0]["confirmed_at"]
    assert rows[0]["created_at"]
    assert rows[0]["status"] == "confirmed"

    upload = (
        "email,query,regions,frequency,timezone,confirmed\n"
        "new@example.org,flood,Abkhazia,daily,UTC,yes\n"
        "broken-address,flood,,daily,UTC,yes\n"
        "other@example.org,(unbalanced,,daily,UTC,no\n"
    )
    response = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": form_token(client, "/admin/subscribers/import")},
        files={"file": ("readers.csv", upload.encode(), "text/csv")},
    )
    assert response.status_code == 200
    assert "1 added, 2 rejected" in response.text
    assert "<td>3</td>" in response.text
    assert "<td>4</td>" in response.text
    assert "position" in response.text
    not_utf8 = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": form_token(client, "/admin/subscribers/import")},
        files={"file": ("readers.csv", b"email\n\xff\xfe@x\n", "text/csv")},
    )
    assert not_utf8.status_code == 400
    # each row the import added is audited like any other addition, then the import itself
    assert [action for action, _, _ in audit_actions(database)] == [
        "subscribers.export",
        "subscriber.add",
        "subscribers.import",
    ]


def test_suppressions_are_added_and_removed(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    assert (
        post(
            client, "/admin/suppressions", email="Gone@Example.org", detail="asked by phone"
        ).status_code
        == 303
    )
    assert post(client, "/admin/suppressions", email="not an address").status_code == 422
    page = client.get("/admin/suppressions").text
    assert "gone@example.org" in page
    assert "asked by phone" in page
    with database.session_scope() as session:
        suppression = session.scalars(select(Suppression)).one()
        assert suppression.reason.value == "manual"
        suppression_id = suppression.id
    assert post(client, f"/admin/suppressions/{suppression_id}/delete").status_code == 303
    assert "gone@example.org" not in client.get("/admin/suppressions").text
    assert audit_actions(database) == [
        ("suppression.add", "suppression", str(suppression_id)),
        ("suppression.remove", "suppression", str(suppression_id)),
    ]
    with database.session_scope() as session:
        details = [entry.detail for entry in session.scalars(select(AuditEntry))]
    assert "gone@example.org" not in repr(details)


def test_admin_adds_users_changes_roles_deactivates_and_resets(database: Database) -> None:
    admin_id = add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    assert (
        post(
            client,
            "/admin/users",
            email="new@example.org",
            role="editor",
            password="a long enough password",
        ).status_code
        == 303
    )
    assert post(client, "/admin/users", email="new@example.org", role="editor").status_code == 422
    assert (
        post(
            client, "/admin/users", email="short@example.org", role="editor", password="short"
        ).status_code
        == 422
    )
    generated = post(client, "/admin/users", email="gen@example.org", role="admin")
    assert generated.status_code == 200
    secret = re.search(r'id="secret">([^<]+)<', generated.text)
    assert secret
    assert log_in(TestClient(create_app()), "gen@example.org", secret.group(1)).status_code == 303

    with database.session_scope() as session:
        new = session.scalars(select(User).where(User.email == "new@example.org")).one()
        new_id = new.id
    editor = signed_in("new@example.org", "a long enough password")
    assert editor.get("/admin/users").status_code == 403
    assert post(client, f"/admin/users/{new_id}/role", role="admin").status_code == 303
    assert editor.get("/admin/users").status_code == 200  # the role applies at once
    assert post(client, f"/admin/users/{new_id}/role", role="owner").status_code == 422
    assert post(client, f"/admin/users/{admin_id}/role", role="editor").status_code == 409

    assert post(client, f"/admin/users/{new_id}/deactivate").status_code == 303
    assert editor.get("/admin", follow_redirects=False).status_code == 303
    assert (
        log_in(TestClient(create_app()), "new@example.org", "a long enough password").status_code
        == 401
    )
    post(client, f"/admin/users/{new_id}/activate")
    reset = post(client, f"/admin/users/{new_id}/reset-password")
    fresh = re.search(r'id="secret">([^<]+)<', reset.text)
    assert fresh
    assert log_in(TestClient(create_app()), "new@example.org", fresh.group(1)).status_code == 303

    actions = [action for action, _, _ in audit_actions(database)]
    assert actions == [
        "user.add",
        "user.add",
        "user.role",
        "user.deactivate",
        "user.activate",
        "user.reset_password",
    ]
    assert "user.role" in client.get("/admin/audit").text


def test_password_change_ends_every_older_session(database: Database) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    here = signed_in(EDITOR)
    elsewhere = signed_in(EDITOR)
    stolen = elsewhere.cookies.get(SESSION_COOKIE)
    assert elsewhere.get("/admin/account").status_code == 200

    wrong = post(
        here,
        "/admin/account/password",
        current="nope",
        new="another long one",
        repeat="another long one",
    )
    assert wrong.status_code == 422
    changed = post(
        here,
        "/admin/account/password",
        current=PASSWORD,
        new="another long one",
        repeat="another long one",
    )
    assert changed.status_code == 303

    assert here.get("/admin/account").status_code == 200  # this browser got a fresh session
    assert elsewhere.get("/admin/account", follow_redirects=False).status_code == 303
    replay = TestClient(create_app(), cookies={SESSION_COOKIE: stolen or ""})
    assert replay.get("/admin/account", follow_redirects=False).status_code == 303
    assert log_in(TestClient(create_app()), EDITOR, PASSWORD).status_code == 401
    assert log_in(TestClient(create_app()), EDITOR, "another long one").status_code == 303


def test_expired_or_forged_sessions_are_refused(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    live = client.cookies.get(SESSION_COOKIE) or ""
    assert client.get("/admin", follow_redirects=False).status_code == 200
    with database.session_scope() as session:
        for row in session.scalars(select(WebSession)):
            row.expires_at = utcnow() - timedelta(minutes=1)
    for cookie in (live, live[:-4] + "AAAA", "garbage"):
        client = TestClient(create_app(), cookies={SESSION_COOKIE: cookie})
        assert client.get("/admin", follow_redirects=False).status_code == 303


def test_posts_without_a_valid_csrf_token_are_refused(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    reader = add_reader(database, "anna@example.org")
    client = signed_in(ADMIN)
    missing = client.post(f"/admin/subscribers/{reader}/suspend", follow_redirects=False)
    forged = client.post(
        f"/admin/subscribers/{reader}/suspend",
        data={"csrf_token": "0" * 64},
        follow_redirects=False,
    )
    assert missing.status_code == forged.status_code == 403
    assert status_of(database, reader) is SubscriberStatus.CONFIRMED
    login = TestClient(create_app()).post(
        "/admin/login", data={"email": ADMIN, "password": PASSWORD}, follow_redirects=False
    )
    assert login.status_code == 403
    assert client.post("/admin/logout", follow_redirects=False).status_code == 403
    assert post(client, "/admin/logout").status_code == 303
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_typed_text_is_escaped_on_every_console_page(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    with database.session_scope() as session:
        # Stored directly: whatever validation lets through today, pages must not trust it.
        reader = Subscriber(email=f"{ATTRIBUTE_BREAK}{SCRIPT}@example.org", name=SCRIPT)
        session.add(reader)
        session.add(User(email=f"{SCRIPT}{ATTRIBUTE_BREAK}", password_hash="x", role=Role.EDITOR))
        source = Source(
            name=f"{SCRIPT}{ATTRIBUTE_BREAK}",
            url="https://feeds.example/x",
            last_status="error",
            last_error=SCRIPT,
        )
        session.add(source)
        session.flush()
        article = Article(
            source_id=source.id,
            source_name=source.name,
            title=SCRIPT + ATTRIBUTE_BREAK,
            fingerprint="f" * 64,
            title_key="t" * 64,
        )
        session.add(article)
        session.flush()
        session.add(
            Delivery(
                dedup_key="alert:x",
                kind=DeliveryKind.ALERT,
                state=DeliveryState.FAILED,
                subscriber_id=reader.id,
                article_id=article.id,
                recipient="r@example.org",
                message_id="<m@x>",
                reason=ATTRIBUTE_BREAK,
            )
        )
        session.add(Suppression(email=SCRIPT, reason="manual", detail=ATTRIBUTE_BREAK))
        reader_id = reader.id
    client = signed_in(ADMIN)
    pages = [
        client.get("/admin"),
        client.get("/admin/subscribers", params={"q": SCRIPT}),
        client.get("/admin/subscribers", params={"q": ATTRIBUTE_BREAK}),
        client.get("/admin/subscribers"),
        client.get(f"/admin/subscribers/{reader_id}"),
        client.get(f"/admin/subscribers/{reader_id}/delete"),
        client.get("/admin/users"),
        client.get("/admin/suppressions", params={"q": ATTRIBUTE_BREAK}),
        client.get("/admin/suppressions"),
        post(client, "/admin/users", email=ATTRIBUTE_BREAK, role="editor"),
    ]
    for page in pages:
        assert page.status_code in (200, 422), page.url
        for payload in PAYLOADS:
            assert payload not in page.text, page.url
            assert "<img src=x" not in page.text, page.url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].text  # article title, source
    assert "&lt;script&gt;" in pages[1].text  # the query, echoed back
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[2].text
    assert "&lt;script&gt;" in pages[6].text  # a user's address


def test_dashboard_shows_figures_queue_and_errors(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    add_reader(database, "anna@example.org")
    add_reader(database, "boris@example.org", confirmed=False)
    queue = get_settings().broker_dir / "queue"
    queue.mkdir(parents=True)
    for number in range(3):  # kombu's file names: <time>_<id>.<queue>.msg
        (queue / f"{number}_x.send.msg").write_text("{}")
    (queue / "9_x.match.msg").write_text("{}")
    with database.session_scope() as session:
        session.add(
            Source(
                name="Desk feed",
                url="https://feeds.example/desk",
                last_status="error",
                last_error="HTTP 503 from the feed",
            )
        )
        session.add(
            Delivery(
                dedup_key="d1",
                kind=DeliveryKind.DIGEST,
                state=DeliveryState.BOUNCED,
                recipient="x@example.org",
                message_id="<1@x>",
                reason="550 no such user",
            )
        )
        session.add(
            Delivery(
                dedup_key="d2",
                kind=DeliveryKind.DIGEST,
                state=DeliveryState.SENT,
                recipient="y@example.org",
                message_id="<2@x>",
            )
        )
    INGEST_ENTRIES.labels("Desk feed", "new").inc(2)  # what an ingest counts
    text = signed_in(ADMIN).get("/admin").text
    assert re.search(r"<dt>ingest_entries: new</dt><dd>\d+<", text)
    assert re.search(r"confirmed</a></dt><dd>1<", text)
    assert re.search(r"pending</a></dt><dd>1<", text)
    assert re.search(r"<dt>sent</dt><dd>1<", text)
    assert re.search(r"<dt>bounced today</dt><dd>1<", text)
    assert re.search(r"waiting in “send”</dt><dd>3<", text)
    assert re.search(r"waiting in “match”</dt><dd>1<", text)
    assert "HTTP 503 from the feed" in text
    assert "550 no such user" in text
    # PostgreSQL shows the planner's estimate (0 before any ANALYZE), SQLite the count.
    delivery_rows = "2" if database.url.startswith("sqlite") else r"\d+"
    assert re.search(rf"<td>deliveries</td>\s*<td>{delivery_rows}</td>", text)
    assert re.search(r"<td>audit entries</td>(.|\n)*?<td>forever</td>", text)
    assert "whole database" in text
    assert re.search(r"<td>\d{4}-\d\d-\d\d</td>\s*<td>0</td>", text)  # one row a day


def test_the_dashboard_flags_a_day_over_the_complaint_limit(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    now = utcnow()
    with database.session_scope() as session:
        for number in range(100):
            session.add(
                Delivery(
                    dedup_key=f"sent{number}",
                    kind=DeliveryKind.DIGEST,
                    state=DeliveryState.SENT,
                    recipient=f"r{number}@example.org",
                    message_id=f"<{number}@x>",
                    sent_at=now,
                )
            )
    add_reader(database, "angry@example.org")
    with database.session_scope() as session:
        record(session, BounceReport("complaint", ["angry@example.org"]), get_settings(), now)
    text = signed_in(ADMIN).get("/admin").text
    today = now.date().isoformat()
    assert re.search(
        rf'<tr class="over-limit">\s*<td>{today}</td>\s*<td>100</td>(.|\n)*?1.00 %', text
    )
    assert "over 0.3 %" in text


def test_a_bounced_reader_shows_the_bounce_history_and_can_be_reactivated(
    database: Database,
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    reader = add_reader(database, "gone@example.org")
    with database.session_scope() as session:
        report = BounceReport("soft", ["gone@example.org"], "4.2.2")
        for _ in range(6):
            record(session, report, get_settings(), utcnow())
    client = signed_in(ADMIN)
    page = client.get(f"/admin/subscribers/{reader}").text
    assert page.count("<td>soft</td>") == 6
    assert "Reactivate" in page
    done = post(client, f"/admin/subscribers/{reader}/reactivate")
    assert done.status_code == 303, done.text
    page = client.get(f"/admin/subscribers/{reader}?notice=reactivated").text
    assert 'id="subscriber-status">confirmed<' in page
    assert "No bounce, complaint" in page
    with database.session_scope() as session:
        assert session.scalars(select(Suppression)).all() == []
        assert [e.action for e in session.scalars(select(AuditEntry))][-1] == (
            "subscriber.reactivate"
        )


def test_webhooks_are_registered_shown_with_their_answers_and_deactivated(
    database: Database,
) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    refused = post(client, "/admin/webhooks", url="ftp://example.org/hook")
    assert refused.status_code == 422
    created = client.post(
        "/admin/webhooks",
        data={
            "url": "https://hooks.example.org/alerts",
            "event": ["delivery.bounced", "newsletter.sent"],
            "csrf_token": form_token(client, "/admin/account"),
        },
    )
    assert created.status_code == 200
    with database.session_scope() as session:
        endpoint = session.scalars(select(WebhookEndpoint)).one()
        assert endpoint.secret in created.text  # shown once
        assert endpoint.events == ["delivery.bounced", "newsletter.sent"]
        emit(session, "newsletter.sent", {"newsletter_id": 1}, utcnow())
        delivery = session.scalars(select(WebhookDelivery)).one()
        delivery.attempts, delivery.last_status, delivery.last_response = 1, 502, "<b>gateway</b>"
        endpoint_id = endpoint.id
    page = client.get("/admin/webhooks").text
    assert "https://hooks.example.org/alerts" in page
    assert "502" in page
    assert "&lt;b&gt;gateway&lt;/b&gt;" in page
    assert post(client, f"/admin/webhooks/{endpoint_id}/deactivate").status_code == 303
    assert "(inactive)" in client.get("/admin/webhooks").text
    assert [a for a, _, _ in audit_actions(database)] == ["webhook.add", "webhook.deactivate"]
