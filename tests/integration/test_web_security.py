"""Issue 12, finding 9, over HTTP on SQLite and PostgreSQL: staff sessions that can
be revoked, CSRF tokens an attacker cannot plant, a login throttle that never
locks the owner out, proxies and hosts trusted only when configured, reader
links that can be signed out, sign-ups that change nothing until confirmed,
and the caps on interests, preference writes and API paging."""

from __future__ import annotations

import argparse
import re
import threading
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.cli.processes import run_web
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.links import CONFIRM_PURPOSE, PREFERENCES_PURPOSE, UNSUBSCRIBE_PURPOSE, subscriber_links
from alerts.models import (
    DeliveryKind,
    Frequency,
    Role,
    Subscriber,
    SubscriberStatus,
    User,
    WebSession,
)
from alerts.users import LOGIN_FAILURES_PER_CLIENT, LOGIN_FREE_FAILURES, create_api_token
from alerts.web.app import create_app
from alerts.web.security import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import RecordedJobs, free_port, wait_until
from tests.integration.smtp_server import SmtpTestServer
from tests.integration.test_web_admin import (
    ADMIN,
    EDITOR,
    PASSWORD,
    TOKEN_FIELD,
    add_user,
    form_token,
    log_in,
    post,
    signed_in,
)
from tests.integration.test_web_public import (
    Site,
    confirmed_reader,
    mailer,
    text_part,
    token_for,
)

CLIENT_A = ("203.0.113.66", 40000)
CLIENT_B = ("198.51.100.20", 40000)


def browser(client: tuple[str, int] = ("192.0.2.1", 50000), **kwargs: Any) -> TestClient:
    return TestClient(create_app(), client=client, **kwargs)


def use_settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"ALERTS_{name.upper()}", value)
    get_settings.cache_clear()


@pytest.fixture
def site(database: Database, recorded_jobs: RecordedJobs) -> Site:
    return Site(database)


def reader(site: Site, email: str) -> Subscriber:
    found = site.subscriber(email)
    assert found is not None
    return found


# --- sessions ----------------------------------------------------------------------


def test_logout_revokes_the_session_so_a_copied_cookie_stops_working(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    copied = client.cookies.get(SESSION_COOKIE) or ""
    thief = TestClient(create_app(), cookies={SESSION_COOKIE: copied})
    assert thief.get("/admin", follow_redirects=False).status_code == 200

    assert post(client, "/admin/logout").status_code == 303

    assert thief.get("/admin", follow_redirects=False).status_code == 303
    with database.session_scope() as session:
        [row] = session.scalars(select(WebSession)).all()
        assert row.revoked_at is not None
        # Only a hash of the cookie is stored: the database cannot sign anybody in.
        assert copied not in row.token_hash


def test_role_change_and_deactivation_end_the_targets_sessions(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    editor_id = add_user(database, EDITOR, Role.EDITOR)
    boss = signed_in(ADMIN)

    promoted = signed_in(EDITOR)
    assert post(boss, f"/admin/users/{editor_id}/role", role="admin").status_code == 303
    assert promoted.get("/admin/account", follow_redirects=False).status_code == 303

    again = signed_in(EDITOR)
    assert again.get("/admin/users").status_code == 200  # the new role, after signing in
    assert post(boss, f"/admin/users/{editor_id}/deactivate").status_code == 303
    assert again.get("/admin/account", follow_redirects=False).status_code == 303
    assert boss.get("/admin/account").status_code == 200  # the actor is untouched


def test_a_session_past_its_end_is_refused(database: Database) -> None:
    add_user(database, EDITOR, Role.EDITOR)
    client = signed_in(EDITOR)
    with database.session_scope() as session:
        row = session.scalars(select(WebSession)).one()
        assert row.expires_at - row.created_at == timedelta(hours=12)
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/admin/account", follow_redirects=False).status_code == 303


# --- CSRF --------------------------------------------------------------------------


def test_a_csrf_cookie_planted_by_an_attacker_is_refused(database: Database) -> None:
    """The attacker loads the form with a cookie value of their choosing, then
    plants that value in the victim's browser and sends the form's token."""
    planted = "attacker-chosen-value"
    attacker = TestClient(create_app(), cookies={CSRF_COOKIE: planted})
    page = attacker.get("/")
    token = TOKEN_FIELD.search(page.text)
    assert token
    # The server does not adopt a value it did not sign: it hands out its own.
    issued = page.headers["set-cookie"]
    assert issued.startswith(f"{CSRF_COOKIE}=")
    assert planted not in issued

    victim = TestClient(create_app(), cookies={CSRF_COOKIE: planted})
    forged = victim.post(
        "/signup",
        data={"csrf_token": token.group(1), "email": "victim@example.org", "query": "flood"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    with database.session_scope() as session:
        assert session.scalar(select(Subscriber)) is None


def test_csrf_token_is_rotated_at_login_and_bound_to_the_session(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    client = TestClient(create_app())
    before = form_token(client)
    anonymous_cookie = client.cookies.get(CSRF_COOKIE)
    assert log_in(client, ADMIN).status_code == 303
    assert client.cookies.get(CSRF_COOKIE) != anonymous_cookie
    after = form_token(client, "/admin/account")
    assert after != before

    # The token of the page before sign-in no longer works for the signed-in browser.
    stale = client.post(
        "/admin/account/tokens", data={"name": "x", "csrf_token": before}, follow_redirects=False
    )
    assert stale.status_code == 403
    # Another staff member's valid token does not work with this session.
    add_user(database, EDITOR, Role.EDITOR)
    other = signed_in(EDITOR)
    borrowed = client.post(
        "/admin/account/tokens",
        data={"name": "x", "csrf_token": form_token(other, "/admin/account")},
        follow_redirects=False,
    )
    assert borrowed.status_code == 403
    fresh = client.post(
        "/admin/account/tokens", data={"name": "x", "csrf_token": after}, follow_redirects=False
    )
    assert fresh.status_code == 200


# --- the login throttle ------------------------------------------------------------


def login_from(client: tuple[str, int], email: str, password: str) -> int:
    return log_in(browser(client), email, password).status_code


def test_an_attacker_elsewhere_never_locks_the_owner_out(database: Database) -> None:
    add_user(database, ADMIN, Role.ADMIN)
    attacker = browser(CLIENT_A)
    answers = [log_in(attacker, ADMIN, f"guess {n}").status_code for n in range(50)]
    assert answers[:LOGIN_FREE_FAILURES] == [401] * LOGIN_FREE_FAILURES
    assert set(answers[LOGIN_FREE_FAILURES:]) == {429}

    # The owner, from another place, signs in at once.
    assert login_from(CLIENT_B, ADMIN, PASSWORD) == 303
    # The attacker's client stays throttled, even with the right password.
    assert login_from(CLIENT_A, ADMIN, PASSWORD) == 429


def test_one_client_trying_many_accounts_hits_the_per_client_cap(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A smaller cap than the real one, so the test does not hash 50 passwords.
    cap = 2 * LOGIN_FREE_FAILURES
    assert cap < LOGIN_FAILURES_PER_CLIENT
    monkeypatch.setattr("alerts.users.LOGIN_FAILURES_PER_CLIENT", cap)
    add_user(database, EDITOR, Role.EDITOR)
    spray = browser(CLIENT_A)
    accounts = cap // LOGIN_FREE_FAILURES
    for number in range(accounts):
        for _ in range(LOGIN_FREE_FAILURES):
            assert log_in(spray, f"user{number}@example.org", "guess").status_code == 401
    assert login_from(CLIENT_A, EDITOR, PASSWORD) == 429
    assert login_from(CLIENT_B, EDITOR, PASSWORD) == 303


# --- proxies and hosts -------------------------------------------------------------


def test_x_forwarded_for_is_ignored_from_peers_that_are_not_trusted_proxies(site: Site) -> None:
    """Every sign-up claims another address; the per-IP limit still counts the peer."""
    for number in range(10):
        response = site.post(
            "/signup",
            {"email": f"r{number}@example.org", "query": "flood"},
            headers={"X-Forwarded-For": f"10.0.0.{number}"},
        )
        assert response.status_code == 303
    refused = site.post(
        "/signup",
        {"email": "r99@example.org", "query": "flood"},
        headers={"X-Forwarded-For": "10.9.9.9"},
    )
    assert refused.status_code == 429


def test_alerts_web_keeps_uvicorn_from_believing_forwarded_headers(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server as ``alerts web`` configures it, on loopback: uvicorn would
    otherwise take the client address from X-Forwarded-For sent to 127.0.0.1."""
    captured: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: captured.update(options, app=app))
    monkeypatch.setattr("alerts.cli.processes.configure_logging", lambda *_: None)
    port = free_port()
    run_web(argparse.Namespace(host="127.0.0.1", port=port))
    server = uvicorn.Server(uvicorn.Config(captured.pop("app"), **captured))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "the web server")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            answers = []
            for number in range(11):
                token = TOKEN_FIELD.search(client.get("/").text)
                assert token
                answers.append(
                    client.post(
                        "/signup",
                        data={
                            "csrf_token": token.group(1),
                            "email": f"r{number}@example.org",
                            "query": "flood",
                        },
                        headers={"X-Forwarded-For": f"10.0.0.{number}"},
                    ).status_code
                )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert answers == [303] * 10 + [429]


def test_a_trusted_proxy_names_the_client(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    use_settings(monkeypatch, trusted_proxies="192.0.2.0/24")
    for number in range(12):
        # The left-most entry is the client's own claim; the proxy appended the real one.
        response = site.post(
            "/signup",
            {"email": f"r{number}@example.org", "query": "flood"},
            headers={"X-Forwarded-For": f"6.6.6.6, 203.0.113.{number}"},
        )
        assert response.status_code == 303


def test_untrusted_hosts_are_refused_and_redirects_never_use_the_host(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERTS_TRUSTED_HOSTS")
    use_settings(monkeypatch, base_url="https://news.example.org")
    local = TestClient(create_app(), base_url="http://127.0.0.1:8000")
    public = TestClient(create_app(), base_url="https://news.example.org")
    evil = TestClient(create_app(), base_url="http://evil.example")
    assert local.get("/").status_code == 200
    assert public.get("/").status_code == 200
    refused = evil.get("/admin", follow_redirects=False)
    assert refused.status_code == 400
    assert "location" not in refused.headers
    assert evil.get("/healthz").status_code == 200  # probes call with any Host

    # A redirect from a trusted host is a path, not a URL built from the Host header.
    stranger = public.get("/admin", follow_redirects=False)
    assert stranger.status_code == 303
    assert stranger.headers["location"].startswith("/admin/login")
    add_user(database, ADMIN, Role.ADMIN)
    token = form_token(public)
    login = public.post(
        "/admin/login",
        data={"email": ADMIN, "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-Host": "evil.example"},
        follow_redirects=False,
    )
    assert login.headers["location"] == "/admin"
    assert "secure" in login.headers["set-cookie"].lower()


# --- reader links ------------------------------------------------------------------


def test_signing_out_of_all_links_kills_every_link_sent_so_far(site: Site) -> None:
    reader_id = confirmed_reader(site)
    centre = f"/preferences/{token_for(PREFERENCES_PURPOSE, reader_id)}"
    leave = f"/unsubscribe/{token_for(UNSUBSCRIBE_PURPOSE, reader_id)}"
    assert site.client.get(centre).status_code == 200

    done = site.post(f"{centre}/sign-out")
    assert done.status_code == 200
    assert "Every link is signed out" in done.text

    stale = site.client.get(centre)
    assert stale.status_code == 400
    assert "no longer works" in stale.text
    assert site.post(f"{centre}/pause").status_code == 400
    assert site.client.get(leave).status_code == 400
    assert site.client.post(leave).status_code == 400
    assert reader(site, "reader@example.org").status is SubscriberStatus.CONFIRMED
    # The next mail carries links of the new version, which work.
    assert site.client.get(f"/preferences/{token_for(PREFERENCES_PURPOSE, reader_id)}").is_success


def test_a_used_unsubscribe_link_answers_kindly_and_a_new_sign_up_kills_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader_id = confirmed_reader(site)
    leave = f"/unsubscribe/{token_for(UNSUBSCRIBE_PURPOSE, reader_id)}"
    centre = f"/preferences/{token_for(PREFERENCES_PURPOSE, reader_id)}"
    assert site.client.post(leave).status_code == 200
    assert reader(site, "reader@example.org").status is SubscriberStatus.UNSUBSCRIBED

    for again in (site.client.get(leave), site.client.post(leave)):
        assert again.status_code == 200
        assert "You are unsubscribed" in again.text
    assert site.client.get(centre).status_code == 400

    later = utcnow() + timedelta(minutes=61)
    monkeypatch.setattr("alerts.web.public.utcnow", lambda: later)
    assert site.sign_up("reader@example.org").status_code == 303
    assert site.post(f"/confirm/{token_for(CONFIRM_PURPOSE, reader_id)}").status_code == 200
    assert reader(site, "reader@example.org").status is SubscriberStatus.CONFIRMED
    # The link from before the new subscription must not end it.
    assert site.client.post(leave).status_code == 400
    assert reader(site, "reader@example.org").status is SubscriberStatus.CONFIRMED


def test_links_in_mail_expire(site: Site) -> None:
    reader_id = confirmed_reader(site)
    with site.database.session_scope() as session:
        version = session.get(Subscriber, reader_id).token_version  # type: ignore[union-attr]
    settings = get_settings()
    old = utcnow() - timedelta(days=settings.preference_link_valid_days + 1)
    links = subscriber_links(settings, reader_id, version=version, issued_at=old)
    assert site.client.get(links["preferences"]).status_code == 400
    assert "has expired" in site.client.get(links["preferences"]).text
    # The unsubscribe link of the same mail still works: it lives longer.
    assert site.client.get(links["unsubscribe"]).status_code == 200
    assert settings.unsubscribe_link_valid_days >= 60


# --- sign-up for an existing address -----------------------------------------------


def confirmation_link(site: Site, smtp: SmtpTestServer) -> tuple[str, EmailMessage]:
    """Send the confirmations due over SMTP; the link in the last one the server took."""
    ids = [d.id for d in site.deliveries(DeliveryKind.CONFIRMATION)]
    send_deliveries(site.database, ids, mailer(smtp.sender()), utcnow)
    message = smtp.received()[-1]
    link = re.search(r"http://\S+(/confirm/\S+)", text_part(message))
    assert link
    return link.group(1), message


def test_a_sign_up_for_a_confirmed_address_changes_nothing_until_confirmed(
    site: Site, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader_id = confirmed_reader(site, query="flood")
    before = reader(site, "reader@example.org")
    later = utcnow() + timedelta(minutes=61)
    monkeypatch.setattr("alerts.web.public.utcnow", lambda: later)

    stranger = Site(site.database, client_ip="198.51.100.99")
    assert stranger.sign_up(
        "reader@example.org", query="referendum", frequency="weekly"
    ).is_redirect

    after = reader(site, "reader@example.org")
    assert [i.query for i in site.interests(reader_id)] == ["flood"]
    assert (after.status, after.frequency) == (SubscriberStatus.CONFIRMED, before.frequency)
    # The reader is told, and the mail says what was asked for.
    link, message = confirmation_link(site, smtp_server)
    assert message["To"] == "reader@example.org"
    assert "already receives news alerts" in text_part(message)
    assert "Asked for: referendum" in text_part(message)

    assert site.post(link).status_code == 200
    assert [i.query for i in site.interests(reader_id)] == ["flood", "referendum"]
    assert reader(site, "reader@example.org").frequency is Frequency.WEEKLY
    # The same link a second time changes nothing more.
    assert "already subscribed" in site.post(link).text
    assert len(site.interests(reader_id)) == 2


def test_a_sign_up_for_an_unsubscribed_address_keeps_their_choices_until_confirmed(
    site: Site, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader_id = confirmed_reader(site, query="flood")
    assert site.client.post(f"/unsubscribe/{token_for(UNSUBSCRIBE_PURPOSE, reader_id)}").is_success
    later = utcnow() + timedelta(minutes=61)
    monkeypatch.setattr("alerts.web.public.utcnow", lambda: later)

    assert site.sign_up("reader@example.org", query="referendum").is_redirect
    assert reader(site, "reader@example.org").status is SubscriberStatus.UNSUBSCRIBED
    assert [i.query for i in site.interests(reader_id)] == ["flood"]

    link, _ = confirmation_link(site, smtp_server)
    assert site.post(link).status_code == 200
    assert reader(site, "reader@example.org").status is SubscriberStatus.CONFIRMED
    assert [i.query for i in site.interests(reader_id)] == ["referendum"]


def test_an_older_confirmation_link_does_not_apply_a_newer_request(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert site.sign_up("reader@example.org", query="flood").is_redirect
    reader_id = reader(site, "reader@example.org").id
    first = f"/confirm/{token_for(CONFIRM_PURPOSE, reader_id)}"
    later = utcnow() + timedelta(minutes=61)
    monkeypatch.setattr("alerts.web.public.utcnow", lambda: later)
    assert site.sign_up("reader@example.org", query="referendum").is_redirect

    refused = site.post(first)
    assert refused.status_code == 400
    assert "has expired" in refused.text
    assert reader(site, "reader@example.org").status is SubscriberStatus.PENDING


def test_every_address_takes_the_same_path_at_sign_up(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing must not tell who is subscribed: new, pending, confirmed and
    unsubscribed addresses each get one request stored and one mail promised."""
    confirmed_reader(site, "confirmed@example.org")
    gone = confirmed_reader(site, "gone@example.org")
    assert site.client.post(f"/unsubscribe/{token_for(UNSUBSCRIBE_PURPOSE, gone)}").is_success
    assert site.sign_up("pending@example.org").is_redirect
    later = utcnow() + timedelta(minutes=61)
    monkeypatch.setattr("alerts.web.public.utcnow", lambda: later)
    before = len(site.deliveries(DeliveryKind.CONFIRMATION))

    addresses = (
        "new@example.org",
        "pending@example.org",
        "confirmed@example.org",
        "gone@example.org",
    )
    for address in addresses:
        assert Site(site.database, client_ip="198.51.100.1").sign_up(address).is_redirect
    assert len(site.deliveries(DeliveryKind.CONFIRMATION)) == before + len(addresses)
    for address in addresses:
        assert reader(site, address).pending_signup is not None


# --- caps --------------------------------------------------------------------------


def test_interests_per_reader_are_capped(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    use_settings(monkeypatch, max_interests_per_reader="2")
    reader_id = confirmed_reader(site)
    centre = f"/preferences/{token_for(PREFERENCES_PURPOSE, reader_id)}"
    assert site.post(f"{centre}/interests", {"query": "flood"}).status_code == 303
    refused = site.post(f"{centre}/interests", {"query": "storm"})
    assert refused.status_code == 400
    assert "the most allowed" in refused.text
    assert len(site.interests(reader_id)) == 2

    with site.database.session_scope() as session:
        admin = User(
            email="api@example.org",
            password_hash="x",
            role=Role.ADMIN,
            password_changed_at=utcnow(),
        )
        session.add(admin)
        session.flush()
        secret = create_api_token(session, "test", admin, "t", utcnow()).secret
    api = site.client.post(
        "/api/interests",
        json={"subscriber_id": reader_id, "query": "storm", "regions": []},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert api.status_code == 422
    assert len(site.interests(reader_id)) == 2


def test_preference_writes_are_capped_but_leaving_always_works(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, preference_writes_per_hour="3")
    reader_id = confirmed_reader(site)
    centre = f"/preferences/{token_for(PREFERENCES_PURPOSE, reader_id)}"
    for action in ("pause", "resume", "pause"):
        assert site.post(f"{centre}/{action}").status_code == 303
    refused = site.post(f"{centre}/resume")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"
    assert "Too many changes" in refused.text
    assert reader(site, "reader@example.org").paused
    assert site.post(f"{centre}/unsubscribe").status_code == 200
    assert reader(site, "reader@example.org").status is SubscriberStatus.UNSUBSCRIBED


def test_api_paging_out_of_range_is_a_clean_422(database: Database) -> None:
    with database.session_scope() as session:
        admin = User(email=ADMIN, password_hash="x", role=Role.ADMIN, password_changed_at=utcnow())
        session.add(admin)
        session.flush()
        secret = create_api_token(session, "test", admin, "t", utcnow()).secret
    client = TestClient(create_app())
    auth = {"Authorization": f"Bearer {secret}"}
    for query in ("offset=99999999999999999999", "limit=99999999999999999999", "offset=-1"):
        assert client.get(f"/api/subscribers?{query}", headers=auth).status_code == 422
    assert client.get("/api/subscribers?offset=5", headers=auth).status_code == 200
