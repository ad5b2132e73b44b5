"""The editors' desk over HTTP, on SQLite and PostgreSQL: sources, composing,
preview, tests, scheduling, cancelling, progress, recurrence, roles, CSRF, escaping."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select

from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.delivery.render import MailRenderer
from alerts.i18n import ReaderLocale
from alerts.ingest.service import claim_due_sources
from alerts.mailer import build_mailer
from alerts.models import (
    Article,
    AuditEntry,
    Newsletter,
    NewsletterStatus,
    Role,
    Source,
)
from alerts.newsletters import (
    LINKS_DISABLED_PATH,
    SAMPLE_ADDRESS,
    next_occurrence,
    plan_recurring,
    preview_sample,
    start_due_issues,
)
from alerts.users import create_user
from alerts.web.app import create_app
from tests import factories
from tests.conftest import RecordedJobs
from tests.integration.newsroom import READERS, seed_newsroom

ADMIN = "chief@example.org"
EDITOR = "desk@example.org"
PASSWORD = "a long editor password"
SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=alert(1)>'
TBILISI_OFFSET = timedelta(hours=4)  # Georgia keeps UTC+4 all year
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
ISSUE_URL = re.compile(r"/editor/newsletters/(\d+)\?notice=created$")
QUERY_ISSUE = {
    "subject": "Morning briefing",
    "intro": "Hello **{email}**, here is the news.",
    "section_title": "Transport",
    "section_kind": "query",
    "section_query": "tram OR crossing",
    "section_regions": "",
    "section_days": "7",
    "section_limit": "10",
    "section_articles": "",
}


# --- helpers --------------------------------------------------------------------------


def add_user(database: Database, email: str, role: Role) -> None:
    with database.session_scope() as session:
        create_user(session, "test", email, PASSWORD, role, utcnow())


def form_token(client: TestClient, path: str = "/admin/login") -> str:
    match = TOKEN_FIELD.search(client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def signed_in(email: str) -> TestClient:
    client = TestClient(create_app())
    response = client.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "csrf_token": form_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


def post(client: TestClient, path: str, **fields: str | list[str]) -> Response:
    """A form post with this browser's CSRF token, as the desk's forms send it."""
    return client.post(
        path,
        data={**fields, "csrf_token": form_token(client, "/editor/sources")},
        follow_redirects=False,
    )


def newsroom(database: Database) -> None:
    """Three confirmed readers in three places, one pending, three fresh articles."""
    seed_newsroom(database, utcnow())


def compose(client: TestClient, **fields: str | list[str]) -> int:
    response = post(client, "/editor/newsletters", **{**QUERY_ISSUE, **fields})
    assert response.status_code == 303, response.text
    match = ISSUE_URL.search(response.headers["location"])
    assert match
    return int(match.group(1))


def issue(database: Database, newsletter_id: int) -> Newsletter:
    with database.session_scope() as session:
        newsletter = session.get_one(Newsletter, newsletter_id)
        session.expunge(newsletter)
        return newsletter


def audit_actions(database: Database) -> list[str]:
    return [action for action, _, _ in factories.audit_actions(database)]


def outbox(data_dir: Path) -> list[tuple[str, str]]:
    """(To, Subject) of every mail written to the outbox."""
    mails = []
    for path in sorted((data_dir / "outbox").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        mails.append((str(message["To"]), str(message["Subject"])))
    return mails


def start_and_send(database: Database) -> list[int]:
    """What the clock and a worker do: start due issues, then send their mail."""
    settings = get_settings()
    with database.session_scope() as session:
        ids = start_due_issues(session, settings, utcnow())
    send_deliveries(database, ids, build_mailer(settings), utcnow)
    return ids


# --- access ---------------------------------------------------------------------------


def test_strangers_are_sent_to_the_login_page(database: Database) -> None:
    client = TestClient(create_app())
    token = form_token(client)
    for path in ("/editor", "/editor/sources", "/editor/newsletters/new", "/editor/newsletters/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/admin/login?next={path}"
    for path in ("/editor/sources", "/editor/newsletters", "/editor/newsletters/1/send-now"):
        response = client.post(path, data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login")
    assert client.get("/editor/articles.json", follow_redirects=False).status_code == 303


def test_editors_are_refused_admin_pages_and_admins_use_the_desk(database: Database) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    add_user(database, ADMIN, Role.ADMIN)
    editor = signed_in(EDITOR)
    assert editor.get("/editor").status_code == 200
    assert 'href="/editor"' in editor.get("/admin").text
    for path in ("/admin/subscribers", "/admin/users", "/admin/audit"):
        assert editor.get(path).status_code == 403, path
    admin = signed_in(ADMIN)
    for path in ("/editor", "/editor/sources", "/editor/newsletters/new"):
        assert admin.get(path).status_code == 200, path
    assert post(admin, "/editor/sources", url="https://news.example/feed").status_code == 303


def test_posts_without_the_csrf_token_are_refused(database: Database) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    refused = client.post("/editor/sources", data={"url": "https://news.example/feed"})
    assert refused.status_code == 403
    forged = client.post(
        "/editor/newsletters", data={**QUERY_ISSUE, "csrf_token": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    with database.session_scope() as session:
        assert session.scalars(select(Source)).all() == []
        assert session.scalars(select(Newsletter)).all() == []


# --- sources --------------------------------------------------------------------------


def test_editor_adds_edits_pauses_resumes_and_polls_a_source(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    added = post(
        client,
        "/editor/sources",
        url="https://news.example/feed.xml",
        name="Caucasus desk",
        poll_minutes="30",
        tags="News, Abkhazia, news",
    )
    assert added.status_code == 303
    bad_url = post(client, "/editor/sources", url="ftp://news.example/feed", poll_minutes="30")
    assert bad_url.status_code == 422
    assert "http:// or https://" in bad_url.text
    assert 'aria-describedby="url-error"' in bad_url.text
    for minutes in ("0", "1441", "often"):
        bad_interval = post(
            client, "/editor/sources", url="https://other.example/feed", poll_minutes=minutes
        )
        assert bad_interval.status_code == 422, minutes
        assert "poll every 1 to 1440 minutes" in bad_interval.text
    taken = post(client, "/editor/sources", url="https://news.example/feed.xml")
    assert taken.status_code == 422
    assert "already polls this address" in taken.text

    with database.session_scope() as session:
        source = session.scalars(select(Source)).one()
        assert (source.name, source.poll_minutes, source.default_tags, source.active) == (
            "Caucasus desk",
            30,
            ["News", "Abkhazia"],
            True,
        )
        source_id = source.id
        source.etag, source.last_modified = '"abc"', "Tue, 24 Mar 2026 08:00:00 GMT"
        source.next_poll_at = utcnow() + timedelta(hours=1)
        source.last_status, source.last_error = "error", "HTTP 503 from the server"
    listing = client.get("/editor/sources").text
    assert "HTTP 503 from the server" in listing
    assert "Caucasus desk" in listing

    edited = post(
        client,
        f"/editor/sources/{source_id}",
        url="https://news.example/rss",
        name="Caucasus desk",
        poll_minutes="60",
        tags="News, Abkhazia",
    )
    assert edited.status_code == 303
    refused = post(
        client, f"/editor/sources/{source_id}", url="https://x.example", poll_minutes="-5"
    )
    assert refused.status_code == 422
    with database.session_scope() as session:
        source = session.get_one(Source, source_id)
        assert (source.url, source.poll_minutes, source.etag, source.last_modified) == (
            "https://news.example/rss",
            60,
            None,
            None,
        )
        assert source.next_poll_at is not None
        assert source.next_poll_at <= utcnow()

    assert post(client, f"/editor/sources/{source_id}/pause").status_code == 303
    with database.session_scope() as session:
        assert session.get_one(Source, source_id).active is False
        assert claim_due_sources(session, utcnow()) == []  # paused: the clock leaves it
    assert "Resume" in client.get("/editor/sources").text
    assert post(client, f"/editor/sources/{source_id}/resume").status_code == 303
    with database.session_scope() as session:
        source = session.get_one(Source, source_id)
        source.next_poll_at = utcnow() + timedelta(hours=1)
    assert post(client, f"/editor/sources/{source_id}/poll").status_code == 303
    with database.session_scope() as session:
        assert claim_due_sources(session, utcnow()) == [source_id]
    assert recorded_jobs.named("poll_source") == [{"source_id": source_id}]
    assert audit_actions(database) == [
        "source.add",
        "source.edit",
        "source.pause",
        "source.resume",
        "source.poll",
    ]


# --- composing ------------------------------------------------------------------------


def test_compose_a_draft_with_a_query_section_and_a_segment(database: Database) -> None:
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    page = client.get("/editor/newsletters/new").text
    for placeholder in ("{email}", "{date}", "{preferences_url}", "{unsubscribe_url}"):
        assert placeholder in page

    newsletter_id = compose(
        client,
        section_title=["Transport", ""],
        section_kind=["query", "query"],
        section_query=["tram OR crossing", ""],
        section_regions=["Georgia", ""],
        section_days=["3", "7"],
        section_limit=["5", "10"],
        section_articles=["", ""],
        audience="segment",
        audience_regions="Abkhazia",
        audience_languages="de",
        audience_frequency="daily",
    )
    stored = issue(database, newsletter_id)
    assert stored.status is NewsletterStatus.DRAFT
    [section] = stored.sections
    assert (section["title"], section["query"], section["days"], section["limit"]) == (
        "Transport",
        "tram OR crossing",
        3,
        5,
    )
    assert len(section["regions"]) == 1
    assert stored.audience["languages"] == ["de"]
    assert stored.audience["frequencies"] == ["daily"]
    assert stored.audience["regions"]

    with database.session_scope() as session:
        article_ids = list(session.scalars(select(Article.id).order_by(Article.id)))
    search = client.get("/editor/articles.json", params={"q": "tram"}).json()
    assert [a["title"] for a in search["articles"]] == ["Tram line approved in Tbilisi"]
    assert client.get("/editor/articles.json", params={"q": "(tram"}).json()["query_error"]

    edited = post(
        client,
        f"/editor/newsletters/{newsletter_id}",
        **{
            **QUERY_ISSUE,
            "subject": "Morning briefing, edited",
            "section_title": "Picked",
            "section_kind": "picked",
            "section_articles": f"{article_ids[0]}, {article_ids[2]}",
        },
    )
    assert edited.status_code == 303
    stored = issue(database, newsletter_id)
    assert stored.subject == "Morning briefing, edited"
    assert stored.sections == [{"title": "Picked", "article_ids": [article_ids[0], article_ids[2]]}]
    assert stored.audience == {}
    assert "Metro fares rise" in client.get(f"/editor/newsletters/{newsletter_id}").text
    assert audit_actions(database) == ["newsletter.create", "newsletter.edit"]


def test_bad_placeholders_queries_and_articles_are_shown_next_to_their_fields(
    database: Database,
) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    placeholder = post(
        client, "/editor/newsletters", **{**QUERY_ISSUE, "intro": "Dear {name}, {{ config }}"}
    )
    assert placeholder.status_code == 422
    text = html.unescape(placeholder.text)
    assert 'id="intro-error"' in text
    assert "unknown placeholder {name}" in text
    assert "Dear {name}, {{ config }}" in text  # what was typed stays in the field

    query = post(client, "/editor/newsletters", **{**QUERY_ISSUE, "section_query": "(tram"})
    assert query.status_code == 422
    assert 'id="section-0-error"' in query.text
    assert "unbalanced" in html.unescape(query.text)

    missing = post(
        client,
        "/editor/newsletters",
        **{**QUERY_ISSUE, "section_kind": "picked", "section_articles": "999"},
    )
    assert missing.status_code == 422
    assert "no article 999" in missing.text

    no_segment = post(client, "/editor/newsletters", **{**QUERY_ISSUE, "audience": "segment"})
    assert no_segment.status_code == 422
    assert 'id="audience-error"' in no_segment.text
    no_subject = post(client, "/editor/newsletters", **{**QUERY_ISSUE, "subject": "  "})
    assert 'id="subject-error"' in no_subject.text
    with database.session_scope() as session:
        assert session.scalars(select(Newsletter)).all() == []


# --- preview and test -----------------------------------------------------------------


def test_preview_as_a_kind_of_reader_is_what_the_domain_renders(database: Database) -> None:
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    newsletter_id = compose(client)

    page = client.get(f"/editor/newsletters/{newsletter_id}/preview")
    assert page.status_code == 200
    # One choice per language and zone of the audience, most common first, then by code.
    assert re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page.text) == [
        ("0", "Deutsch, UTC (1 reader)"),
        ("1", "English, UTC (1 reader)"),
        ("2", "Русский, UTC (1 reader)"),
    ]
    assert "Links are disabled in previews" in page.text
    assert "<iframe" in page.text
    assert "sandbox" in page.text
    assert "Tram line approved in Tbilisi" in html.unescape(page.text)

    framed = client.get(f"/editor/newsletters/{newsletter_id}/preview.html", params={"sample": 1})
    assert framed.status_code == 200
    assert f"<strong>{SAMPLE_ADDRESS}</strong>" in framed.text
    policy_header = framed.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in policy_header
    assert "sandbox" in policy_header
    assert "script-src" not in policy_header  # default-src 'none' covers scripts
    assert framed.headers["x-frame-options"] == "SAMEORIGIN"
    settings = get_settings()
    with database.session_scope() as session:
        expected = preview_sample(
            session, newsletter_id, ReaderLocale("en", "UTC"), settings, utcnow(), MailRenderer()
        )
    assert framed.text == expected.html


def test_an_editors_preview_holds_no_readers_address_and_no_usable_token(
    database: Database,
) -> None:
    """Finding 6: the preview named readers and carried their signed links."""
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    newsletter_id = compose(client)
    base = f"/editor/newsletters/{newsletter_id}"
    pages = [client.get(f"{base}/preview").text, client.get(f"{base}/preview.html").text]
    for sample in range(3):
        pages.append(client.get(f"{base}/preview", params={"sample": sample}).text)
        pages.append(client.get(f"{base}/preview.html", params={"sample": sample}).text)
    # The old ?email= now picks nothing: the page shows the stand-in all the same.
    pages.append(client.get(f"{base}/preview", params={"email": READERS[1][0]}).text)
    pages.append(client.get(f"{base}/preview.html", params={"email": READERS[1][0]}).text)
    for text in pages:
        for email, *_ in READERS:
            assert email not in text
        # Every signed reader link (whatever its version or date) has one of these paths.
        assert "/preferences/" not in text
        assert "/unsubscribe/" not in text
        assert "/confirm/" not in text
    assert f"http://127.0.0.1:8000{LINKS_DISABLED_PATH}" in pages[1]
    disabled = client.get(LINKS_DISABLED_PATH)
    assert disabled.status_code == 200
    assert "links are disabled" in disabled.text.lower()


def test_a_test_mail_goes_to_the_given_address_only(
    database: Database, isolated_settings: Path
) -> None:
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    newsletter_id = compose(client)
    bad = post(client, f"/editor/newsletters/{newsletter_id}/test", addresses="not an address")
    assert bad.status_code == 422
    assert 'id="test-error"' in bad.text
    sent = post(client, f"/editor/newsletters/{newsletter_id}/test", addresses="proof@example.net")
    assert sent.status_code == 303
    assert sent.headers["location"].endswith("notice=tested")
    assert outbox(isolated_settings) == [("proof@example.net", "[Test] Morning briefing")]
    assert issue(database, newsletter_id).status is NewsletterStatus.DRAFT
    with database.session_scope() as session:
        details = [e.detail for e in session.scalars(select(AuditEntry))]
    assert {"recipients": 1} in details
    assert "proof@example.net" not in repr(details)


def test_test_mails_are_marked_carry_disabled_links_and_are_capped_per_editor(
    database: Database, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_TEST_SENDS_PER_HOUR", "3")
    get_settings.cache_clear()
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(EDITOR)
    newsletter_id = compose(client)
    test_url = f"/editor/newsletters/{newsletter_id}/test"
    # A reader's own address: the test speaks their language, but holds none of their links.
    sent = post(client, test_url, addresses=f"proof@example.net, {READERS[1][0]}")
    assert sent.status_code == 303
    assert (
        "You may send 1 more this hour." in client.get(f"/editor/newsletters/{newsletter_id}").text
    )
    mails = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted((isolated_settings / "outbox").glob("*.eml"))
    ]
    assert len(mails) == 2
    for mail in mails:
        assert str(mail["Subject"]).startswith("[Test] ")
        assert mail["List-Unsubscribe"].startswith(f"<http://127.0.0.1:8000{LINKS_DISABLED_PATH}>")
        raw = mail.as_string()
        assert "/unsubscribe/" not in raw
        assert "/preferences/" not in raw

    refused = post(client, test_url, addresses="one@example.net, two@example.net")
    assert refused.status_code == 422
    assert "limited to 3 an hour per editor; 1 left now, 2 asked for" in html.unescape(refused.text)
    assert len(list((isolated_settings / "outbox").glob("*.eml"))) == 2  # nothing more went
    assert post(client, test_url, addresses="one@example.net").status_code == 303
    assert post(client, test_url, addresses="two@example.net").status_code == 422
    # The cap is each editor's own.
    assert post(signed_in(ADMIN), test_url, addresses="two@example.net").status_code == 303


# --- schedule, cancel, progress -------------------------------------------------------


def test_schedule_in_tbilisi_stores_utc_and_cancel_works_until_sending_starts(
    database: Database, isolated_settings: Path
) -> None:
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    first = compose(client)
    year = utcnow().year + 1
    scheduled = post(
        client,
        f"/editor/newsletters/{first}/schedule",
        date=f"{year}-01-15",
        time="09:00",
        timezone="Asia/Tbilisi",
    )
    assert scheduled.status_code == 303
    stored = issue(database, first)
    assert stored.status is NewsletterStatus.SCHEDULED
    assert stored.scheduled_at == datetime(year, 1, 15, 9, 0, tzinfo=UTC) - TBILISI_OFFSET
    shown = client.get(f"/editor/newsletters/{first}").text
    assert f'id="issue-scheduled">{year}-01-15 09:00 Asia/Tbilisi<' in shown
    past = post(
        client,
        f"/editor/newsletters/{first}/schedule",
        date="2020-01-01",
        time="09:00",
        timezone="UTC",
    )
    assert past.status_code == 422
    assert "that time has passed" in past.text
    assert post(client, f"/editor/newsletters/{first}/cancel").status_code == 303
    assert issue(database, first).status is NewsletterStatus.CANCELLED

    second = compose(client)
    assert post(client, f"/editor/newsletters/{second}/send-now").status_code == 303
    assert start_and_send(database)
    late = post(client, f"/editor/newsletters/{second}/cancel")
    assert late.status_code == 409
    assert f"issue {second} is sending; too late to cancel" in late.text
    moved = post(
        client,
        f"/editor/newsletters/{second}/schedule",
        date=f"{year}-01-15",
        time="09:00",
        timezone="Asia/Tbilisi",
    )
    assert moved.status_code == 422
    assert f"issue {second} is sending; too late to change" in moved.text
    assert issue(database, second).status is NewsletterStatus.SENDING

    progress_page = client.get(f"/editor/newsletters/{second}/progress")
    assert '<meta http-equiv="refresh"' in progress_page.text
    assert 'id="count-sent">3<' in progress_page.text
    assert 'id="count-failed">0<' in progress_page.text
    counts = client.get(f"/editor/newsletters/{second}/progress.json").json()
    assert counts["counts"]["sent"] == 3
    assert sorted(to for to, _ in outbox(isolated_settings)) == sorted(r[0] for r in READERS)
    assert audit_actions(database) == [
        "newsletter.create",
        "newsletter.schedule",
        "newsletter.cancel",
        "newsletter.create",
        "newsletter.send_now",
    ]


# --- recurring ------------------------------------------------------------------------


def test_recurring_issue_shows_its_next_occurrence_and_held_issues_are_approved(
    database: Database,
) -> None:
    newsroom(database)
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    template = compose(client, subject="Caucasus Weekly")
    bad = post(client, f"/editor/newsletters/{template}/recur", cron="0 7 * *", timezone="UTC")
    assert bad.status_code == 422
    assert 'id="recur-error"' in bad.text
    made = post(
        client,
        f"/editor/newsletters/{template}/recur",
        cron="0 7 * * mon",
        timezone="Asia/Tbilisi",
        approval="true",
    )
    assert made.status_code == 303
    stored = issue(database, template)
    expected = next_occurrence("0 7 * * mon", "Asia/Tbilisi", utcnow() - timedelta(minutes=1))
    assert stored.recurrence_next_at == expected
    in_tbilisi = expected + TBILISI_OFFSET
    assert (in_tbilisi.weekday(), in_tbilisi.hour) == (0, 7)
    assert f"{in_tbilisi:%Y-%m-%d} 07:00 Asia/Tbilisi" in client.get("/editor").text
    assert f"{in_tbilisi:%Y-%m-%d} 07:00" in client.get(f"/editor/newsletters/{template}").text

    with database.session_scope() as session:
        [held] = plan_recurring(session, expected)
    assert issue(database, held).status is NewsletterStatus.AWAITING_APPROVAL
    listing = client.get("/editor").text
    assert "Waiting for approval" in listing
    assert f"Approve #{held}" in listing
    assert post(client, f"/editor/newsletters/{held}/approve").status_code == 303
    assert issue(database, held).status is NewsletterStatus.SCHEDULED
    again = post(client, f"/editor/newsletters/{held}/approve")
    assert again.status_code == 409
    assert "nothing to approve" in again.text
    assert audit_actions(database)[-2:] == ["newsletter.recur", "newsletter.approve"]


# --- escaping -------------------------------------------------------------------------


def test_what_people_type_comes_out_escaped(database: Database) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    with database.session_scope() as session:
        session.add(
            Article(
                title=f"Headline {SCRIPT}{ATTRIBUTE_BREAK}",
                body="Body text about trams.",
                fingerprint="xss-1",
                title_key="xss-1",
                language="en",
                source_name=SCRIPT,
                ingested_at=utcnow(),
            )
        )
        session.flush()
        article_id = session.scalars(select(Article.id)).one()
    client = signed_in(EDITOR)
    assert (
        post(
            client,
            "/editor/sources",
            url="https://news.example/feed",
            name=f"Feed {SCRIPT}{ATTRIBUTE_BREAK}",
            tags=SCRIPT,
        ).status_code
        == 303
    )
    newsletter_id = compose(
        client,
        subject=f"Issue {SCRIPT}{ATTRIBUTE_BREAK}",
        section_title=f"Section {SCRIPT}{ATTRIBUTE_BREAK}",
        section_kind="picked",
        section_articles=str(article_id),
    )
    pages = [
        client.get("/editor/sources").text,
        client.get("/editor").text,
        client.get(f"/editor/newsletters/{newsletter_id}").text,
        client.get(f"/editor/newsletters/{newsletter_id}/progress").text,
        client.get(f"/editor/newsletters/{newsletter_id}/preview").text,
    ]
    for text in pages:
        assert SCRIPT not in text
        assert ATTRIBUTE_BREAK not in text
    assert "&lt;script&gt;" in pages[0]
    assert "Headline &lt;script&gt;" in pages[2]
    framed = client.get(f"/editor/newsletters/{newsletter_id}/preview.html").text
    assert SCRIPT not in framed
