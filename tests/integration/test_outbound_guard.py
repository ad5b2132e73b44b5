"""Every edge that stores or fetches a user's URL goes through the outbound guard.

Sources (editor page, API, CLI, `alerts ingest URL`, polls) and webhooks (the
console, the POST itself), on SQLite and PostgreSQL, against servers on
loopback that the tests start. Without the allow-list, loopback is refused and
the server is never contacted; what users read says what failed, not how.
"""

from __future__ import annotations

import tomllib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.ingest import service
from alerts.ingest.service import UNEXPECTED_FAILURE, limits_from, poll_source
from alerts.models import DeliveryState, Role, Source, WebhookDelivery, WebhookEndpoint
from alerts.netguard import Outbound
from alerts.sources import SourceInputError, validate_url
from alerts.web.app import create_app
from alerts.webhooks import WebhookError, add_endpoint, deliver, emit
from tests.conftest import LOOPBACK_NETWORKS, REPO_ROOT, FeedServer, RecordedJobs
from tests.integration import test_web_admin as console
from tests.integration.test_api import make_token
from tests.integration.test_web_editor import add_user, post, signed_in
from tests.integration.test_webhooks import Receiver

LOOPBACK_URLS = [
    "http://127.0.0.1:{port}/feed.xml",
    "http://localhost:{port}/feed.xml",
    "http://127.1:{port}/feed.xml",
    "http://0x7f000001:{port}/feed.xml",
    "http://2130706433:{port}/feed.xml",
    "http://[::1]:{port}/feed.xml",
    "http://[::ffff:127.0.0.1]:{port}/feed.xml",
    "http://0177.0.0.1:{port}/feed.xml",
    "http://169.254.169.254/latest/meta-data/",
]
RSS = (REPO_ROOT / "sample" / "feed.xml").read_bytes()


@pytest.fixture
def no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: nothing allowed beyond the public internet."""
    monkeypatch.delenv("ALERTS_FETCH_ALLOWED_NETWORKS", raising=False)
    get_settings.cache_clear()


def _port(server: FeedServer) -> int:
    return int(server.httpd.server_port)


@pytest.mark.parametrize("template", LOOPBACK_URLS)
def test_source_validation_refuses_the_servers_own_network(
    feed_server: FeedServer, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERTS_FETCH_ALLOWED_NETWORKS", raising=False)  # feed_server set it
    get_settings.cache_clear()
    with pytest.raises(SourceInputError) as refused:
        validate_url(template.format(port=_port(feed_server)))
    assert refused.value.field == "url"
    assert feed_server.requests == []


def test_source_validation_accepts_what_the_operator_allows(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    assert validate_url(url) == url
    assert validate_url("https://feeds.example/rss") == "https://feeds.example/rss"


def test_editor_api_and_cli_refuse_a_loopback_source(
    database: Database, no_allow_list: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.1:8080/admin"
    add_user(database, "desk@example.org", Role.EDITOR)
    editor = signed_in("desk@example.org")
    page = post(editor, "/editor/sources", url=url, poll_minutes="30")
    assert page.status_code == 422
    assert "address not allowed" in page.text
    token = make_token(database, "api@example.org", Role.EDITOR)
    api = TestClient(create_app()).post(
        "/api/sources", headers={"Authorization": f"Bearer {token}"}, json={"url": url}
    )
    assert api.status_code == 422
    assert "address not allowed" in api.text

    assert main(["sources", "add", url]) == 1
    assert "address not allowed" in capsys.readouterr().err
    with database.session_scope() as session:
        assert session.scalars(select(Source)).all() == []


def test_cli_ingest_of_a_loopback_url_is_refused_unless_allowed(
    database: Database,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = feed_server.serve("/feed.xml", RSS)
    monkeypatch.delenv("ALERTS_FETCH_ALLOWED_NETWORKS")
    get_settings.cache_clear()
    assert main(["ingest", url]) == 1
    assert "address not allowed" in capsys.readouterr().err
    assert feed_server.requests == []
    monkeypatch.setenv("ALERTS_FETCH_ALLOWED_NETWORKS", LOOPBACK_NETWORKS)
    get_settings.cache_clear()
    assert main(["ingest", url]) == 0


def test_a_poll_that_turns_to_loopback_is_refused_and_recorded(
    database: Database,
    feed_server: FeedServer,
    recorded_jobs: RecordedJobs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source stored while allowed (or by a name that now resolves to loopback)."""
    url = feed_server.serve("/feed.xml", RSS)
    with database.session_scope() as session:
        source = Source(name="Inside", url=url, poll_minutes=10)
        session.add(source)
        session.flush()
        source_id = source.id
    monkeypatch.delenv("ALERTS_FETCH_ALLOWED_NETWORKS")
    get_settings.cache_clear()
    with database.session_scope() as session:
        poll_source(session, source_id, utcnow(), limits_from(get_settings()))
    with database.session_scope() as session:
        source = session.get_one(Source, source_id)
        assert source.last_status == "error"
        assert source.last_error == (
            f"cannot fetch {url}: address not allowed: 127.0.0.1 is not a public internet address"
        )
    assert feed_server.requests == []


def test_status_shows_what_failed_without_transport_detail(
    database: Database, allow_loopback_fetches: str, recorded_jobs: RecordedJobs
) -> None:
    closed = "http://127.0.0.1:9/feed.xml"
    with database.session_scope() as session:
        source = Source(name="Closed port", url=closed, poll_minutes=10)
        session.add(source)
        session.flush()
        poll_source(session, source.id, utcnow(), limits_from(get_settings()))
        assert source.last_error == f"cannot fetch {closed}: could not connect to the server"
    page = TestClient(create_app()).get("/status").text
    assert "could not be read" in page  # the public page names no error at all
    for detail in ("refused", "Errno", "ConnectError", "disconnected", "could not connect"):
        assert detail not in page


def test_an_unexpected_failure_is_recorded_on_the_source(
    database: Database,
    feed_server: FeedServer,
    recorded_jobs: RecordedJobs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What trafilatura does when lxml_html_clean is missing, and any other bug."""
    url = feed_server.serve("/page.html", b"<html><body><p>Hello</p></body></html>", "text/html")

    def missing_package(*args: object, **kwargs: object) -> None:
        raise ImportError("lxml.html.clean module is now a separate project lxml_html_clean")

    monkeypatch.setattr(service, "parse_document", missing_package)
    with database.session_scope() as session:
        source = Source(name="Page", url=url, poll_minutes=10)
        session.add(source)
        session.flush()
        poll_source(session, source.id, utcnow(), limits_from(get_settings()))
        source_id = source.id
    with database.session_scope() as session:
        source = session.get_one(Source, source_id)
        assert (source.last_status, source.last_error) == ("error", UNEXPECTED_FAILURE)
    assert "lxml_html_clean" in caplog.text  # the detail is in the server's log


def test_html_cleaning_is_a_declared_runtime_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert "lxml_html_clean" in names or "lxml[html_clean]" in project["dependencies"]


# --- webhooks -----------------------------------------------------------------------


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://2130706433/hook",
        "https://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
    ],
)
def test_a_webhook_to_the_servers_own_network_is_refused_when_added(
    database: Database, url: str
) -> None:
    with (
        database.session_scope() as session,
        pytest.raises(WebhookError, match="address not allowed"),
    ):
        add_endpoint(session, "test", url, ["newsletter.sent"], utcnow())


def test_the_console_refuses_a_loopback_webhook(database: Database, no_allow_list: None) -> None:
    console.add_user(database, console.ADMIN, Role.ADMIN)
    client = console.signed_in(console.ADMIN)
    refused = console.post(client, "/admin/webhooks", url="http://127.0.0.1:8000/hook")
    assert refused.status_code == 422
    assert "address not allowed" in refused.text


def test_a_webhook_post_to_loopback_is_refused_without_a_request(
    database: Database,
    allow_loopback_fetches: str,
    recorded_jobs: RecordedJobs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An endpoint stored while loopback was allowed; the guard checks every POST again."""
    receiver = Receiver()
    receiver.thread.start()
    try:
        hook = receiver.url("/hook")
        with database.session_scope() as session:
            add_endpoint(session, "test", hook, ["newsletter.sent"], utcnow())
            ids = emit(session, "newsletter.sent", {"newsletter_id": 1}, utcnow())
        monkeypatch.delenv("ALERTS_FETCH_ALLOWED_NETWORKS")
        get_settings.cache_clear()
        [attempt] = deliver(database, ids, Outbound.from_settings(get_settings()), utcnow)
        assert attempt.status is None
        assert attempt.response == (
            "address not allowed: 127.0.0.1 is not a public internet address"
        )
        assert receiver.posts == []
    finally:
        receiver.httpd.shutdown()
        receiver.httpd.server_close()
    with database.session_scope() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert row.state == DeliveryState.QUEUED  # retried later, like any failed POST
        assert session.scalars(select(WebhookEndpoint)).one().url == hook
