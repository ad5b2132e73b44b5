"""What a stranger may see (issue 12): the outbox, metrics, readiness, status, doctor.

Each test would fail on the code before the fix: the outbox was public and in
the navigation, /metrics and the /readyz details were open, /status showed
subscriber counts, fetch errors and unfiltered feed links.
"""

from __future__ import annotations

import html
import re
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts import metrics as alerts_metrics
from alerts.cli import main
from alerts.config import Settings, get_settings
from alerts.db import Database, utcnow
from alerts.delivery.message import build_message
from alerts.delivery.outbound import send_deliveries
from alerts.health import exposure_warnings, is_loopback
from alerts.mailer import build_mailer
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    Role,
    Source,
    Subscriber,
    SubscriberStatus,
)
from alerts.users import create_user
from alerts.web.app import create_app
from tests.conftest import RecordedJobs, free_port, wait_until

ADMIN = "chief@example.org"
EDITOR = "desk@example.org"
READER = "reader-one@example.org"
PASSWORD = "a long enough password"
TOKEN = "a-metrics-token-long-enough-for-the-doctor"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OUTBOX_LINK = re.compile(r'href="/outbox/([^"/]+\.eml)"')
HREF = re.compile(r'href="([^"]+)"')


# --- helpers --------------------------------------------------------------------------


def csrf(client: TestClient, path: str) -> str:
    found = CSRF.search(client.get(path).text)
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def signed_in(database: Database, email: str, role: Role) -> TestClient:
    with database.session_scope() as session:
        create_user(session, "test", email, PASSWORD, role, utcnow())
    client = TestClient(create_app())
    response = client.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf(client, "/admin/login")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


def reader_signs_up(database: Database) -> None:
    """A stranger signs up; the confirmation mail is written to the outbox."""
    client = TestClient(create_app())
    form = {
        "csrf_token": csrf(client, "/"),
        "email": READER,
        "query": "referendum",
        "frequency": "daily",
        "timezone": "Europe/Berlin",
        "send_at": "06:30",
        "language": "en",
    }
    assert client.post("/signup", data=form, follow_redirects=False).status_code == 303
    with database.session_scope() as session:
        ids = list(
            session.scalars(select(Delivery.id).where(Delivery.kind == DeliveryKind.CONFIRMATION))
        )
    settings = get_settings()
    assert send_deliveries(database, ids, build_mailer(settings), utcnow).sent == 1


def outbox_names(data_dir: Path) -> list[str]:
    return sorted(path.name for path in (data_dir / "outbox").glob("*.eml"))


@pytest.fixture
def with_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_METRICS_TOKEN", TOKEN)
    get_settings.cache_clear()


# --- the outbox -----------------------------------------------------------------------


def test_strangers_and_editors_never_read_the_outbox(
    database: Database, recorded_jobs: RecordedJobs, isolated_settings: Path
) -> None:
    """Finding 1: anyone could read every mail and confirm a stranger's address."""
    reader_signs_up(database)
    [name] = outbox_names(isolated_settings)
    stranger = TestClient(create_app())
    for path in ("/outbox", f"/outbox/{name}", f"/outbox/{name}/html", f"/outbox/{name}/raw"):
        response = stranger.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login")
        assert READER not in response.text
    editor = signed_in(database, EDITOR, Role.EDITOR)
    for path in ("/outbox", f"/outbox/{name}", f"/outbox/{name}/html", f"/outbox/{name}/raw"):
        response = editor.get(path, follow_redirects=False)
        assert response.status_code == 403, path
        assert READER not in response.text
    # Not offered in the public navigation, nor to editors.
    for page in ("/", "/status", "/admin/login"):
        assert 'href="/outbox"' not in stranger.get(page).text
    assert 'href="/outbox"' not in editor.get("/admin").text


def test_an_admin_reads_a_mail_as_its_reader_would_and_its_link_works(
    database: Database, recorded_jobs: RecordedJobs, isolated_settings: Path
) -> None:
    reader_signs_up(database)
    admin = signed_in(database, ADMIN, Role.ADMIN)
    assert 'href="/outbox"' in admin.get("/admin").text  # in the console's navigation
    listing = admin.get("/outbox")
    assert listing.status_code == 200
    [name] = OUTBOX_LINK.findall(listing.text)
    assert READER in listing.text

    page = admin.get(f"/outbox/{name}")
    assert page.status_code == 200
    # The HTML part runs in a sandboxed frame, served under a sandboxing policy.
    assert (
        f'<iframe class="preview__html" title="HTML part" sandbox src="/outbox/{name}/html">'
        in (page.text)
    )
    framed = admin.get(f"/outbox/{name}/html")
    assert framed.status_code == 200
    assert "sandbox" in framed.headers["content-security-policy"]
    assert framed.headers["x-frame-options"] == "SAMEORIGIN"
    assert "<html" in framed.text.lower()
    # The text part is decoded: the confirmation link is whole (no "=" soft line
    # breaks of quoted-printable) and clickable.
    raw = admin.get(f"/outbox/{name}/raw").text
    links = [html.unescape(h) for h in HREF.findall(page.text) if "/confirm/" in h]
    assert len(links) == 1
    confirm = links[0]
    assert confirm.startswith("http://127.0.0.1:8000/confirm/")
    assert "=\n" not in confirm
    assert "Content-Transfer-Encoding" in raw
    # The link works: its page asks for the click, and the click confirms.
    reader = TestClient(create_app())
    path = confirm.removeprefix("http://127.0.0.1:8000")
    assert reader.get(path).status_code == 200
    confirmed = reader.post(path, data={"csrf_token": csrf(reader, path)})
    assert confirmed.status_code == 200
    with database.session_scope() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert subscriber is not None
        assert subscriber.status is SubscriberStatus.CONFIRMED


def test_a_quoted_printable_text_part_is_shown_decoded_with_its_links(
    database: Database, isolated_settings: Path
) -> None:
    long_link = "https://news.example/" + "a" * 120 + "?x=1&y=2"
    message = build_message(
        sender="Alerts <alerts@example.org>",
        to="someone@example.org",
        subject="Über the limit",
        text=f"Grüße. Read {long_link}.\n",
        html=f'<p>Grüße <a href="{long_link}">read</a><script>alert(1)</script></p>',
        message_id="<qp@example.org>",
        date=utcnow(),
        list_id="test.example.org",
        unsubscribe_url="https://news.example/unsubscribe",
        unsubscribe_mailto="unsubscribe@example.org",
    )
    folder = isolated_settings / "outbox"
    folder.mkdir(parents=True)
    (folder / "20260101T000000Z-abc.eml").write_bytes(message)
    admin = signed_in(database, ADMIN, Role.ADMIN)
    page = admin.get("/outbox/20260101T000000Z-abc.eml")
    assert page.status_code == 200
    assert "Grüße. Read" in page.text
    assert f'href="{html.escape(long_link)}"' in page.text
    assert "<script>alert(1)</script>" not in page.text  # the HTML part is only framed


@pytest.mark.parametrize(
    "name",
    [
        "%00.eml",
        "x%00.eml",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "%2E%2E%2Fsecret_key",
        ".hidden.eml",
        "nothing-here.eml",
        "alerts.db",
        "a" * 300 + ".eml",
    ],
)
def test_odd_outbox_names_answer_404_never_500(
    database: Database, isolated_settings: Path, name: str
) -> None:
    admin = signed_in(database, ADMIN, Role.ADMIN)
    (isolated_settings / "outbox").mkdir(parents=True, exist_ok=True)
    for suffix in ("", "/html", "/raw"):
        response = admin.get(f"/outbox/{name}{suffix}", follow_redirects=False)
        assert response.status_code == 404, (name, suffix, response.status_code)


def test_the_outbox_is_off_once_an_smtp_relay_is_set(
    database: Database,
    recorded_jobs: RecordedJobs,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader_signs_up(database)
    [name] = outbox_names(isolated_settings)
    admin = signed_in(database, ADMIN, Role.ADMIN)
    monkeypatch.setenv("ALERTS_SMTP_URL", "smtp://127.0.0.1:1")
    get_settings.cache_clear()
    for path in ("/outbox", f"/outbox/{name}", f"/outbox/{name}/html", f"/outbox/{name}/raw"):
        assert admin.get(path).status_code == 404, path
        assert TestClient(create_app()).get(path).status_code == 404, path
    assert 'href="/outbox"' not in admin.get("/admin").text


# --- metrics and readiness ------------------------------------------------------------


def test_metrics_need_the_bearer_token_or_an_admin(database: Database, with_token: None) -> None:
    client = TestClient(create_app())
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "alerts_" not in refused.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200
    assert "alerts_queue_depth" in scraped.text
    assert signed_in(database, ADMIN, Role.ADMIN).get("/metrics").status_code == 200
    assert signed_in(database, EDITOR, Role.EDITOR).get("/metrics").status_code == 401


def test_without_a_token_setting_no_bearer_opens_the_metrics(database: Database) -> None:
    client = TestClient(create_app())
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 401


def test_readiness_tells_strangers_only_ok(
    database: Database, with_token: None, isolated_settings: Path
) -> None:
    client = TestClient(create_app())
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    assert str(isolated_settings) not in anonymous.text
    detailed = client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert set(detailed.json()) == {"database", "broker", "smtp"}
    assert str(isolated_settings.resolve()) in detailed.text  # the folders, for operators
    assert client.get("/healthz").text == "ok"


def test_the_worker_metrics_port_listens_on_loopback_and_asks_for_the_token(
    with_token: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    servers: list[object] = []
    real_server = alerts_metrics.ThreadingHTTPServer

    def recording_server(address: tuple[str, int], handler: type) -> object:
        server = real_server(address, handler)
        servers.append(server)
        return server

    monkeypatch.setattr(alerts_metrics, "ThreadingHTTPServer", recording_server)
    thread = threading.Thread(target=alerts_metrics.serve, args=(port,), daemon=True)
    thread.start()
    wait_until(lambda: bool(servers), 5, "the metrics server")
    server = servers[0]
    try:
        assert server.server_address[0] == "127.0.0.1"  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        refused.value.close()  # the error holds the response and its socket
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]


# --- the status page ------------------------------------------------------------------


@pytest.fixture
def status_data(database: Database) -> Database:
    now = utcnow()
    with database.session_scope() as session:
        session.add(Subscriber(email=READER, status=SubscriberStatus.CONFIRMED))
        session.add(
            Source(
                name="Intranet",
                url="http://10.0.0.5/feed",
                last_status="error",
                last_error="ConnectError: [Errno 111] Connection refused (10.0.0.5:8080)",
                last_polled_at=now,
            )
        )
        for n, link in enumerate(
            [
                "javascript:alert(document.cookie)",
                " JaVaScRiPt:alert(1)",
                "java\tscript:alert(1)",
                "data:text/html,<script>alert(1)</script>",
                "https://news.example/safe",
            ]
        ):
            session.add(
                Article(
                    title=f"Story {n}",
                    url=link,
                    body="text",
                    language="en",
                    ingested_at=now - timedelta(minutes=n),
                    fingerprint=f"status-{n}",
                    title_key=f"status-{n}",
                )
            )
    return database


def test_public_status_shows_no_counts_no_errors_and_no_script_links(
    status_data: Database, with_token: None
) -> None:
    page = TestClient(create_app()).get("/status")
    assert page.status_code == 200
    assert "Subscribers" not in page.text
    assert "confirmed 1" not in page.text
    assert "Connection refused" not in page.text
    assert "10.0.0.5" not in page.text
    assert "could not be read" in page.text
    hrefs = [html.unescape(h) for h in HREF.findall(page.text)]
    assert "https://news.example/safe" in hrefs
    assert not [h for h in hrefs if "script" in h.lower() or h.lower().startswith("data:")]
    for n in range(4):
        assert f"Story {n}" in page.text  # shown, as plain text

    for client in (
        signed_in(status_data, ADMIN, Role.ADMIN),
        TestClient(create_app(), headers={"Authorization": f"Bearer {TOKEN}"}),
    ):
        detailed = client.get("/status").text
        assert "confirmed 1" in detailed
        assert "Connection refused" in detailed
        assert "javascript:" not in detailed.lower()
    assert "confirmed 1" not in signed_in(status_data, EDITOR, Role.EDITOR).get("/status").text


# --- alerts doctor --------------------------------------------------------------------


def warnings_for(**values: object) -> list[str]:
    return exposure_warnings(Settings(**values))  # type: ignore[arg-type]


def test_the_development_default_has_no_exposure_warning() -> None:
    assert warnings_for() == []
    assert warnings_for(secret_key="x" * 40, metrics_bind="::1") == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"base_url": "https://alerts.example.org", "secret_key": "k" * 40},
            "mail piles up in the outbox",
        ),
        (
            {"smtp_url": "smtp://relay:25", "base_url": "https://alerts.example.org"},
            "ALERTS_SECRET_KEY is unset",
        ),
        ({"secret_key": "short-but-16-chars"}, "ALERTS_SECRET_KEY has 18 characters"),
        ({"metrics_bind": "0.0.0.0"}, "ALERTS_METRICS_TOKEN is unset"),
        ({"metrics_token": "tiny"}, "ALERTS_METRICS_TOKEN has 4 characters"),
        ({"trusted_hosts": "alerts.example.org, *"}, "any Host header is answered"),
        ({"trusted_proxies": "0.0.0.0/0"}, "every client can forge X-Forwarded-For"),
        ({"fetch_allowed_networks": "10.0.0.0/8, 127.0.0.0/8"}, "reaches this machine"),
        ({"fetch_allowed_networks": "169.254.0.0/16"}, "the cloud metadata service"),
        ({"fetch_allowed_networks": "localhost"}, "reaches this machine"),
    ],
)
def test_each_unsafe_setting_gets_its_warning(values: dict[str, object], complaint: str) -> None:
    warnings = warnings_for(**values)
    assert len(warnings) == 1, warnings
    assert complaint in warnings[0]


def test_a_dkim_key_others_can_read_is_warned_about(tmp_path: Path) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text("not a key, only its mode matters here")
    key.chmod(0o644)
    assert "chmod 600" in " ".join(warnings_for(dkim_private_key_file=key))
    key.chmod(0o600)
    assert warnings_for(dkim_private_key_file=key) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("app.localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("alerts.example.org", False),
        ("", False),
    ],
)
def test_loopback_is_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_doctor_prints_warnings_without_failing(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALERTS_BASE_URL", "https://alerts.example.org")
    monkeypatch.setenv("ALERTS_METRICS_BIND", "0.0.0.0")
    get_settings.cache_clear()
    assert main(["doctor"]) == 0
    report = capsys.readouterr().out
    assert "warn  exposure: ALERTS_SMTP_URL is unset while ALERTS_BASE_URL" in report
    assert "warn  exposure: ALERTS_METRICS_BIND is '0.0.0.0'" in report
    assert "warn  exposure: ALERTS_SECRET_KEY is unset" in report
    assert "all good, but 3 warning(s) above" in report
