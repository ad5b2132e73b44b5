"""The reader pages over HTTP (TestClient), on SQLite and PostgreSQL.

Sign-up with double opt-in, confirmation, the preference centre, export and
erasure, and what must never happen: enumeration, state changes on GET,
posts without a CSRF token, unescaped user text.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from markupsafe import escape
from sqlalchemy import func, select

from alerts.alerting import compose_alerts
from alerts.config import get_settings
from alerts.db import Database, get_database, utcnow
from alerts.delivery.ledger import Promise, alert_key, promise
from alerts.delivery.outbound import Mailer, send_deliveries
from alerts.delivery.queueing import message_id_for
from alerts.delivery.render import MailRenderer
from alerts.delivery.senders import Sender
from alerts.links import CONFIRM_PURPOSE, PREFERENCES_PURPOSE
from alerts.models import (
    Article,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Interest,
    RateEvent,
    Subscriber,
    SubscriberStatus,
)
from alerts.signup import (
    SIGNUPS_PER_ADDRESS_PER_WINDOW,
    SIGNUPS_PER_IP_PER_WINDOW,
    compose_confirmations,
    confirm_subject,
)
from alerts.tokens import reader_subject, sign_token
from alerts.web.app import create_app
from tests.conftest import RecordedJobs
from tests.factories import stored_match
from tests.integration.smtp_server import SmtpTestServer

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=alert(1)>'
# A valid local part (RFC 5322 atext) that would break out of a single-quoted attribute.
EMAIL_PAYLOAD = "x'/onfocus='alert`1`'@example.org"
# Each payload inside a query that parses, so it is stored and shown back.
STORED_QUERY = {SCRIPT: f"{SCRIPT} OR flood", ATTRIBUTE_BREAK: f'flood {ATTRIBUTE_BREAK}"'}
CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Site:
    """A browser-like client of the app: keeps cookies, fills in CSRF tokens."""

    def __init__(self, database: Database, client_ip: str = "192.0.2.10") -> None:
        self.database = database
        self.client = TestClient(create_app(), client=(client_ip, 50000))

    def csrf(self, path: str = "/") -> str:
        page = self.client.get(path)
        found = CSRF_PATTERN.search(page.text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Response:
        form = {"csrf_token": self.csrf(), **(data or {})}
        return self.client.post(path, data=form, follow_redirects=False, **kwargs)

    def sign_up(self, email: str, **fields: Any) -> Response:
        data = {
            "email": email,
            "query": "referendum",
            "region": [],
            "frequency": "daily",
            "timezone": "Europe/Berlin",
            "send_at": "06:30",
            "language": "en",
            **fields,
        }
        return self.post("/signup", data)

    def subscriber(self, email: str) -> Subscriber | None:
        with self.database.session_scope() as session:
            return session.scalar(select(Subscriber).where(Subscriber.email == email))

    def deliveries(self, kind: DeliveryKind | None = None) -> list[Delivery]:
        with self.database.session_scope() as session:
            query = select(Delivery).order_by(Delivery.id)
            if kind is not None:
                query = query.where(Delivery.kind == kind)
            return list(session.scalars(query))

    def interests(self, subscriber_id: int) -> list[Interest]:
        with self.database.session_scope() as session:
            return list(
                session.scalars(
                    select(Interest)
                    .where(Interest.subscriber_id == subscriber_id)
                    .order_by(Interest.id)
                )
            )


@pytest.fixture
def site(database: Database, recorded_jobs: RecordedJobs) -> Site:
    return Site(database)


def token_for(purpose: str, subscriber_id: int, **kwargs: Any) -> str:
    """The link token a mail would carry now: the reader's link version, or for a
    confirmation the sign-up request waiting for it."""
    with get_database().session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        version = subscriber.token_version if subscriber else 0
        pending = subscriber.pending_signup if subscriber else None
    subject = (
        confirm_subject(subscriber_id, pending)
        if purpose == CONFIRM_PURPOSE
        else reader_subject(subscriber_id, version)
    )
    return sign_token(get_settings().resolved_secret_key, purpose, subject, **kwargs)


def preferences_path(subscriber_id: int) -> str:
    return f"/preferences/{token_for(PREFERENCES_PURPOSE, subscriber_id)}"


def confirmed_reader(site: Site, email: str = "reader@example.org", **fields: Any) -> int:
    assert site.sign_up(email, **fields).status_code == 303
    subscriber = site.subscriber(email)
    assert subscriber is not None
    path = f"/confirm/{token_for(CONFIRM_PURPOSE, subscriber.id)}"
    assert site.post(path).status_code == 200
    return subscriber.id


def mailer(sender: Sender) -> Mailer:
    return Mailer(
        settings=get_settings(),
        sender=sender,
        renderer=MailRenderer(),
        composers={
            DeliveryKind.CONFIRMATION: compose_confirmations,
            DeliveryKind.ALERT: compose_alerts,
        },
    )


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


# --- sign-up and double opt-in -------------------------------------------------


def test_sign_up_stores_a_pending_reader_and_promises_one_confirmation(
    site: Site, recorded_jobs: RecordedJobs
) -> None:
    page = site.client.get("/")
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert 'for="signup-email"' in page.text

    response = site.sign_up("New.Reader@Example.org", region=["Tskhinvali"])

    assert response.status_code == 303
    assert response.headers["location"] == "/signup/thanks"
    subscriber = site.subscriber("new.reader@example.org")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.confirmed_at is None
    assert subscriber.timezone == "Europe/Berlin"
    assert subscriber.send_at.strftime("%H:%M") == "06:30"
    # The choices wait with the request until the link in the mail is used.
    assert site.interests(subscriber.id) == []
    assert subscriber.pending_signup is not None
    assert subscriber.pending_signup["regions"] == ["ge-c-tskhinvali"]
    [delivery] = site.deliveries()
    assert delivery.kind is DeliveryKind.CONFIRMATION
    assert delivery.dedup_key == f"confirmation.{subscriber.id}"
    assert delivery.recipient == "new.reader@example.org"
    assert delivery.message_id == message_id_for(get_settings(), delivery.dedup_key)
    assert recorded_jobs.named("send_alerts") == [{"delivery_ids": [delivery.id]}]
    thanks = site.client.get("/signup/thanks")
    assert "Check your inbox" in thanks.text
    assert site.post(f"/confirm/{token_for(CONFIRM_PURPOSE, subscriber.id)}").status_code == 200
    [interest] = site.interests(subscriber.id)
    assert (interest.query, interest.regions) == ("referendum", ["ge-c-tskhinvali"])


def test_bad_input_is_shown_on_the_form_and_stores_nothing(site: Site) -> None:
    response = site.sign_up("reader@example.org", query="(referendum", region=["Atlantis"])
    assert response.status_code == 400
    assert "unbalanced" in response.text
    assert 'value="(referendum"' in response.text  # what was typed stays in the form
    assert site.subscriber("reader@example.org") is None
    assert site.deliveries() == []

    response = site.sign_up("not-an-address")
    assert response.status_code == 400
    assert "local-part@domain" in response.text


def test_confirmation_mail_renders_with_the_link_and_nothing_else_reaches_a_pending_reader(
    site: Site, recorded_jobs: RecordedJobs, smtp_server: SmtpTestServer
) -> None:
    site.sign_up("reader@example.org")
    subscriber = site.subscriber("reader@example.org")
    assert subscriber is not None
    with site.database.session_scope() as session:
        article = Article(title="A vote", body="b", fingerprint="fp", title_key="tk")
        session.add(article)
        session.flush()
        key = alert_key(subscriber.id, article.id)
        [alert_id] = promise(
            session,
            [
                Promise(
                    dedup_key=key,
                    kind=DeliveryKind.ALERT,
                    recipient=subscriber.email,
                    message_id=message_id_for(get_settings(), key),
                    due_at=utcnow(),
                    subscriber_id=subscriber.id,
                    article_id=article.id,
                )
            ],
            utcnow(),
        )
    ids = [d.id for d in site.deliveries()]

    report = send_deliveries(site.database, ids, mailer(smtp_server.sender()), utcnow)

    assert (report.sent, report.suppressed) == (1, 1)
    assert smtp_server.recipients() == ["reader@example.org"]
    [message] = smtp_server.received()
    assert message["To"] == "reader@example.org"
    assert message["Subject"] == "Please confirm your news alerts subscription"
    body = text_part(message)
    link = re.search(r"http://\S+/confirm/(\S+)", body)
    assert link, body
    assert "48 hours" in body
    html_part = message.get_body(("html",))
    assert html_part is not None
    assert f"/confirm/{link.group(1)}" in html_part.get_content()
    by_id = {d.id: d for d in site.deliveries()}
    assert by_id[alert_id].state is DeliveryState.SUPPRESSED

    # The link from the mail works: GET shows a button, POST confirms.
    path = f"/confirm/{link.group(1)}"
    assert site.client.get(path).status_code == 200
    assert site.post(path).status_code == 200
    confirmed = site.subscriber("reader@example.org")
    assert confirmed is not None
    assert confirmed.status is SubscriberStatus.CONFIRMED


def test_confirm_link_get_changes_nothing_and_post_confirms(site: Site) -> None:
    site.sign_up("reader@example.org")
    subscriber = site.subscriber("reader@example.org")
    assert subscriber is not None
    path = f"/confirm/{token_for(CONFIRM_PURPOSE, subscriber.id)}"

    page = site.client.get(path)
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert "Confirm my subscription" in page.text
    still = site.subscriber("reader@example.org")
    assert still is not None
    assert still.status is SubscriberStatus.PENDING

    before = utcnow()
    done = site.post(path)
    assert done.status_code == 200
    assert "You are subscribed" in done.text
    confirmed = site.subscriber("reader@example.org")
    assert confirmed is not None
    assert confirmed.status is SubscriberStatus.CONFIRMED
    assert confirmed.confirmed_at is not None
    assert confirmed.confirmed_at >= before - timedelta(seconds=1)
    assert confirmed.last_digest_at == confirmed.confirmed_at
    # The confirmation page leads on to the preference centre.
    centre = re.search(r'href="(/preferences/[^"]+)"', done.text)
    assert centre
    assert site.client.get(html.unescape(centre.group(1))).status_code == 200
    again = site.post(path)
    assert "already subscribed" in again.text


@pytest.mark.parametrize("kind", ["expired", "forged", "wrong purpose"])
def test_expired_or_forged_links_get_a_clear_400_page(site: Site, kind: str) -> None:
    site.sign_up("reader@example.org")
    subscriber = site.subscriber("reader@example.org")
    assert subscriber is not None
    if kind == "expired":
        token = token_for(CONFIRM_PURPOSE, subscriber.id, expires_at=utcnow() - timedelta(hours=1))
    elif kind == "forged":
        token = token_for(CONFIRM_PURPOSE, subscriber.id)[:-4] + "AAAA"
    else:
        token = token_for(PREFERENCES_PURPOSE, subscriber.id)

    for response in (
        site.client.get(f"/confirm/{token}"),
        site.post(f"/confirm/{token}"),
    ):
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        expected = "has expired" if kind == "expired" else "is not valid"
        assert expected in response.text
        assert 'href="/"' in response.text  # a way to sign up again
    pending = site.subscriber("reader@example.org")
    assert pending is not None
    assert pending.status is SubscriberStatus.PENDING


def test_known_and_unknown_addresses_get_the_same_answer(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(response: Response) -> tuple[int, str, str]:
        follow = site.client.get(response.headers["location"])
        return response.status_code, response.headers["location"], follow.text

    new = answer(site.sign_up("pending@example.org"))
    confirmed_reader(site, "confirmed@example.org")
    pending_again = answer(site.sign_up("pending@example.org"))
    confirmed_again = answer(site.sign_up("confirmed@example.org"))

    assert new == pending_again == confirmed_again
    keys = [d.dedup_key for d in site.deliveries(DeliveryKind.CONFIRMATION)]
    pending = site.subscriber("pending@example.org")
    confirmed = site.subscriber("confirmed@example.org")
    assert pending is not None
    assert confirmed is not None
    # One confirmation each: no re-send within the hour, nothing to a confirmed reader.
    assert sorted(keys) == sorted([f"confirmation.{pending.id}", f"confirmation.{confirmed.id}"])

    later = utcnow() + timedelta(minutes=61)
    monkeypatch.setattr("alerts.web.public.utcnow", lambda: later)
    assert answer(site.sign_up("pending@example.org")) == new
    keys = [d.dedup_key for d in site.deliveries(DeliveryKind.CONFIRMATION)]
    assert f"confirmation.{pending.id}.1" in keys
    assert len(keys) == 3


def test_sign_up_is_rate_limited_per_address_and_per_ip(site: Site) -> None:
    for _ in range(SIGNUPS_PER_ADDRESS_PER_WINDOW):
        assert site.sign_up("busy@example.org").status_code == 303
    refused = site.sign_up("busy@example.org")
    assert refused.status_code == 429
    assert "Too many sign-up attempts" in refused.text
    assert refused.headers["Retry-After"] == "3600"

    other = Site(site.database, client_ip="198.51.100.7")
    for number in range(SIGNUPS_PER_IP_PER_WINDOW):
        assert other.sign_up(f"reader{number}@example.org").status_code == 303
    assert other.sign_up("one-more@example.org").status_code == 429
    assert other.subscriber("one-more@example.org") is None
    with site.database.session_scope() as session:
        keys = session.scalars(select(RateEvent.key)).all()
    assert keys
    assert not any("example.org" in key or "198.51" in key for key in keys)


def test_posts_without_a_csrf_token_are_refused(site: Site) -> None:
    reader = confirmed_reader(site)
    centre = preferences_path(reader)
    confirm = f"/confirm/{token_for(CONFIRM_PURPOSE, reader)}"
    site.client.get("/")  # the browser has its cookie, but the form has no token
    for path, data in [
        ("/signup", {"email": "someone@example.org", "query": "flood"}),
        (confirm, {}),
        (f"{centre}/settings", {"frequency": "weekly"}),
        (f"{centre}/pause", {}),
        (f"{centre}/erase", {}),
    ]:
        response = site.client.post(path, data=data, follow_redirects=False)
        assert response.status_code == 403, path
        assert "did not come from this site" in response.text
    forged = site.client.post(
        "/signup", data={"csrf_token": "0" * 64, "email": "x@example.org", "query": "flood"}
    )
    assert forged.status_code == 403
    assert site.subscriber("someone@example.org") is None
    subscriber = site.subscriber("reader@example.org")
    assert subscriber is not None
    assert not subscriber.paused


# --- the helpers behind the form -------------------------------------------------


def test_query_check_reports_the_message_and_position(site: Site) -> None:
    assert site.client.get("/api/query-check", params={"q": "(referendum"}).json() == {
        "ok": False,
        "message": "unbalanced '('",
        "position": 0,
    }
    assert site.client.get("/api/query-check", params={"q": "referendum OR annex*"}).json()["ok"]
    negated = site.client.get("/api/query-check", params={"q": "flood -(rain"}).json()
    assert not negated["ok"]
    assert negated["position"] == 7


def test_region_autocomplete_finds_places_by_name_and_alias(site: Site) -> None:
    found = site.client.get("/api/regions", params={"q": "Tskhin"}).json()
    assert found[0]["name"] == "Tskhinvali"
    assert found[0]["within"] == "South Ossetia"
    by_alias = site.client.get("/api/regions", params={"q": "Цхинвали"}).json()
    assert by_alias[0]["id"] == "ge-c-tskhinvali"
    georgias = {r["id"]: r["value"] for r in site.client.get("/api/regions?q=Georgia").json()}
    # The US state's display name resolves back to the state (issue 13), so
    # the form gets a name a reader can read rather than the id.
    assert georgias["ge"] == "Georgia"
    assert georgias["us-ga"] == "Georgia (U.S. state)"
    assert site.client.get("/api/regions", params={"q": "T"}).json() == []


def test_preview_lists_recent_matching_articles(site: Site) -> None:
    with site.database.session_scope() as session:
        session.add_all(
            [
                Article(
                    title="Referendum date set in Tskhinvali",
                    body="The referendum will take place in spring.",
                    fingerprint="fp1",
                    title_key="tk1",
                    language="en",
                    ingested_at=utcnow(),
                ),
                Article(
                    title="Flood in Batumi",
                    body="Rain all week.",
                    fingerprint="fp2",
                    title_key="tk2",
                    language="en",
                    ingested_at=utcnow(),
                ),
            ]
        )
    found = site.client.get("/api/preview", params={"q": "referendums"}).json()
    assert found["ok"]
    assert [a["title"] for a in found["articles"]] == ["Referendum date set in Tskhinvali"]
    bad = site.client.get("/api/preview", params={"q": "(referendum"}).json()
    assert not bad["ok"]
    assert bad["articles"] == []


# --- the preference centre ----------------------------------------------------------


def test_preference_centre_edits_take_effect_at_once(site: Site) -> None:
    reader = confirmed_reader(site)
    centre = preferences_path(reader)
    page = site.client.get(centre)
    assert page.status_code == 200
    assert "reader@example.org" in page.text

    saved = site.post(
        f"{centre}/settings",
        {
            "frequency": "weekly",
            "timezone": "Asia/Tbilisi",
            "send_at": "08:15",
            "language": "de",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
        },
    )
    assert saved.status_code == 303
    # The reader chose German in this very form, so the notice comes in German.
    assert (
        "Zustelleinstellungen sind gespeichert" in site.client.get(saved.headers["location"]).text
    )
    subscriber = site.subscriber("reader@example.org")
    assert subscriber is not None
    assert subscriber.frequency.value == "weekly"
    assert subscriber.timezone == "Asia/Tbilisi"
    assert subscriber.send_at.strftime("%H:%M") == "08:15"
    assert subscriber.language == "de"
    assert subscriber.quiet_start is not None
    assert subscriber.quiet_start.strftime("%H:%M") == "22:00"

    half_quiet = site.post(
        f"{centre}/settings",
        {
            "frequency": "daily",
            "timezone": "UTC",
            "send_at": "07:00",
            "language": "en",
            "quiet_start": "22:00",
        },
    )
    assert half_quiet.status_code == 400
    assert "both a start and an end" in half_quiet.text
    unchanged = site.subscriber("reader@example.org")
    assert unchanged is not None
    assert unchanged.frequency.value == "weekly"

    [interest] = site.interests(reader)
    refused = site.post(f"{centre}/interests/{interest.id}", {"query": "(referendum"})
    assert refused.status_code == 400
    assert "unbalanced" in refused.text
    assert 'value="(referendum"' in refused.text
    assert site.interests(reader)[0].query == "referendum"

    edited = site.post(
        f"{centre}/interests/{interest.id}", {"query": "annex*", "region": ["South Ossetia"]}
    )
    assert edited.status_code == 303
    [after] = site.interests(reader)
    assert (after.query, after.regions) == ("annex*", ["ge-so"])
    assert after.updated_at > interest.updated_at  # the workers' index re-files it

    assert site.post(f"{centre}/interests", {"region": ["Sukhumi"]}).status_code == 303
    unknown = site.post(f"{centre}/interests", {"region": ["Atlantis"]})
    assert unknown.status_code == 400
    assert "unknown region" in unknown.text
    added = site.interests(reader)[1]
    assert added.regions == ["ge-c-sukhumi"]
    assert site.post(f"{centre}/interests/{added.id}/delete").status_code == 303
    assert len(site.interests(reader)) == 1

    assert site.post(f"{centre}/pause").status_code == 303
    paused = site.subscriber("reader@example.org")
    assert paused is not None
    assert paused.paused
    # The reader chose German above, so the centre now speaks German.
    paused_page = site.client.get(centre).text
    assert '<html lang="de">' in paused_page
    assert "Zustellung fortsetzen" in paused_page  # "Resume delivery"
    assert site.post(f"{centre}/resume").status_code == 303
    resumed = site.subscriber("reader@example.org")
    assert resumed is not None
    assert not resumed.paused

    left = site.post(f"{centre}/unsubscribe")
    assert left.status_code == 200
    assert "You are unsubscribed" in left.text
    gone = site.subscriber("reader@example.org")
    assert gone is not None
    assert gone.status is SubscriberStatus.UNSUBSCRIBED
    # Unsubscribing ends every link sent so far, this centre's included.
    assert site.client.get(centre).status_code == 400


def test_someone_elses_interest_cannot_be_edited(site: Site) -> None:
    mine = confirmed_reader(site, "mine@example.org")
    theirs = confirmed_reader(site, "theirs@example.org")
    [their_interest] = site.interests(theirs)
    response = site.post(
        f"{preferences_path(mine)}/interests/{their_interest.id}", {"query": "hijacked"}
    )
    assert response.status_code == 400
    assert site.interests(theirs)[0].query == "referendum"
    removal = site.post(f"{preferences_path(mine)}/interests/{their_interest.id}/delete")
    assert removal.status_code == 404
    assert len(site.interests(theirs)) == 1


def test_export_holds_settings_interests_deliveries_and_matches(site: Site) -> None:
    reader = confirmed_reader(site, region=["Tskhinvali"])
    [interest] = site.interests(reader)
    with site.database.session_scope() as session:
        article = Article(title="Vote", body="b", fingerprint="fp", title_key="tk")
        session.add(article)
        session.flush()
        stored_match(
            session,
            interest.id,
            article.id,
            score=2.0,
            explanation={"terms": []},
            matched_at=utcnow(),
        )

    response = site.client.get(f"{preferences_path(reader)}/export")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    data = json.loads(response.content)
    assert data["subscriber"]["email"] == "reader@example.org"
    assert data["subscriber"]["status"] == "confirmed"
    assert data["subscriber"]["timezone"] == "Europe/Berlin"
    assert data["interests"] == [
        {
            "id": interest.id,
            "query": "referendum",
            "regions": ["ge-c-tskhinvali"],
            "created_at": data["interests"][0]["created_at"],
            "updated_at": data["interests"][0]["updated_at"],
        }
    ]
    assert [d["kind"] for d in data["deliveries"]] == ["confirmation"]
    assert data["matches"][0]["article_id"] == article.id
    assert data["matches"][0]["score"] == 2.0


def test_erasure_asks_first_then_removes_everything(site: Site) -> None:
    reader = confirmed_reader(site)
    centre = preferences_path(reader)
    ask = site.client.get(f"{centre}/erase")
    assert ask.status_code == 200
    assert "cannot be undone" in ask.text
    assert site.subscriber("reader@example.org") is not None  # a GET deletes nothing

    done = site.post(f"{centre}/erase")

    assert done.status_code == 200
    assert "Your data is deleted" in done.text
    assert site.subscriber("reader@example.org") is None
    with site.database.session_scope() as session:
        assert session.scalar(select(func.count(Interest.id))) == 0
        assert session.scalar(select(func.count(Delivery.id))) == 0
        [entry] = session.scalars(select(AuditEntry)).all()
        assert (entry.actor, entry.action, entry.target_id) == (
            "subscriber",
            "subscriber.erase",
            str(reader),
        )
        assert "example.org" not in json.dumps(entry.detail)
    assert site.client.get(centre).status_code == 404


# --- escaping ----------------------------------------------------------------------


def assert_escaped(page: str, payload: str) -> None:
    assert payload not in page
    assert str(escape(payload)) in page


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAK])
def test_user_text_comes_back_escaped_everywhere(site: Site, payload: str) -> None:
    # Sign-up form re-rendered with an error: both fields echoed.
    refused = site.sign_up("reader@example.org", query=payload, region=[payload])
    assert refused.status_code == 400
    assert_escaped(refused.text, payload)

    # A query payload that parses is stored and shown in the preference centre.
    reader = confirmed_reader(site, EMAIL_PAYLOAD, query=STORED_QUERY[payload])
    centre = preferences_path(reader)
    page = site.client.get(centre)
    assert_escaped(page.text, STORED_QUERY[payload])
    assert_escaped(page.text, EMAIL_PAYLOAD.lower())

    [interest] = site.interests(reader)
    edit_refused = site.post(
        f"{centre}/interests/{interest.id}", {"query": payload, "region": [payload]}
    )
    assert edit_refused.status_code == 400
    assert_escaped(edit_refused.text, payload)
    add_refused = site.post(f"{centre}/interests", {"query": "(" + payload})
    assert add_refused.status_code == 400
    assert "(" + payload not in add_refused.text

    # The JSON helpers are never HTML, and the browser is told not to sniff them.
    check = site.client.get("/api/query-check", params={"q": "(" + payload})
    assert check.headers["content-type"] == "application/json"
    assert check.headers["x-content-type-options"] == "nosniff"


def test_a_russian_readers_preference_centre_is_in_russian(site: Site) -> None:
    reader = confirmed_reader(site, "chitatel@example.org", language="ru")
    # The reader's own choice wins over what the browser asks for.
    page = site.client.get(preferences_path(reader), headers={"Accept-Language": "de, en"})
    assert page.status_code == 200
    assert '<html lang="ru">' in page.text
    for russian in ("Ваши настройки", "Сохранить настройки", "Ключевые слова", "Сразу"):
        assert russian in page.text  # the page, its form macros, the frequency choices
    for english in ("Your preferences", "Save settings", "Keywords", "Immediately"):
        assert english not in page.text
    erase = re.search(r'href="([^"]+/erase\?lang=ru)"', page.text)
    assert erase, "the erase link carries the language"
    assert "Удалить мои данные" in site.client.get(html.unescape(erase.group(1))).text


def test_sign_up_pages_follow_the_browser_and_the_switcher(site: Site) -> None:
    german = site.client.get("/", headers={"Accept-Language": "fr;q=1, de-DE;q=0.9, en;q=0.5"})
    assert '<html lang="de">' in german.text
    assert "Die Nachrichten, die Sie verfolgen, per E-Mail" in german.text
    assert 'href="/?lang=ru"' in german.text
    assert '<option value="de" lang="de" selected>' in german.text

    russian = site.client.get("/?lang=ru", headers={"Accept-Language": "de"})
    assert '<html lang="ru">' in russian.text
    assert 'action="/signup?lang=ru"' in russian.text
    refused = site.post("/signup?lang=ru", {"email": "not an address", "language": "de"})
    assert refused.status_code == 400
    assert '<html lang="ru">' in refused.text
    assert "Пожалуйста, проверьте:" in refused.text
    assert '<option value="de" lang="de" selected>' in refused.text  # what was chosen stays

    assert '<html lang="en">' in site.client.get("/").text
    staff = site.client.get("/status", headers={"Accept-Language": "ru"})
    assert '<html lang="en">' in staff.text  # staff pages are not translated


def test_a_russian_sign_up_gets_a_russian_confirmation(
    site: Site, smtp_server: SmtpTestServer
) -> None:
    assert site.sign_up("chitatel@example.org", language="ru").status_code == 303
    ids = [d.id for d in site.deliveries(DeliveryKind.CONFIRMATION)]
    assert send_deliveries(site.database, ids, mailer(smtp_server.sender()), utcnow).sent == 1
    [message] = smtp_server.received("chitatel@example.org")
    assert len(smtp_server.messages) == 1
    assert message["Subject"] == "Пожалуйста, подтвердите подписку на новостные оповещения"
    body = text_part(message)
    assert "Ссылка действует 48 часов." in body
    link = re.search(r"http://\S+(/confirm/\S+\?lang=ru)", body)
    assert link, body
    page = site.client.get(link.group(1))
    assert '<html lang="ru">' in page.text
    assert "Подтвердить подписку" in page.text
    done = site.post(link.group(1))
    assert "Вы подписаны" in done.text
