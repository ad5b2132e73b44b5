"""Shared fixtures: isolated settings per test, real PostgreSQL and Redis.

A test that needs a service skips when it is down, unless
ALERTS_REQUIRE_SERVICES=1 (CI), where it fails instead.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy import event, text

from alerts import db as alerts_db
from alerts import jobs
from alerts.config import get_settings
from alerts.db import Database, get_database
from alerts.mailer import close_process_mailer
from alerts.models import Base
from workers.dispatch import send_job

POSTGRES_ADMIN_URL = os.environ.get(
    "ALERTS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ALERTS_TEST_REDIS", "redis://127.0.0.1:6379/0")
REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
WAIT_POLL_SECONDS = 0.25


def services_required() -> bool:
    return os.environ.get("ALERTS_REQUIRE_SERVICES", "") not in ("", "0", "false")


def service_missing(reason: str) -> None:
    """Skip the test, or fail it when CI requires every service (a skipif by policy)."""
    if services_required():
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(f"service missing: {reason}")  # skipif-style: only without ALERTS_REQUIRE_SERVICES


class RecordedJobs(list[tuple[str, dict[str, Any]]]):
    """Jobs queued by domain code, in order."""

    def named(self, job: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self if name == job]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir and nothing cached from another test."""
    for name in list(os.environ):
        if name.startswith("ALERTS_") and not name.startswith(("ALERTS_TEST_", "ALERTS_REQUIRE")):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "var"
    monkeypatch.setenv("ALERTS_DATA_DIR", str(data_dir))
    # Starlette's TestClient sends "Host: testserver"; the default list is the
    # base URL's host and loopback (tests of that default clear this).
    monkeypatch.setenv("ALERTS_TRUSTED_HOSTS", "testserver,127.0.0.1,localhost,::1")
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    get_settings.cache_clear()
    # What the entry points install; a test that records its jobs replaces it.
    jobs.set_job_sender(send_job)
    yield data_dir
    close_process_mailer()
    for database in alerts_db._databases.values():
        database.dispose()
    alerts_db._databases.clear()
    get_settings.cache_clear()
    jobs.set_job_sender(None)


@pytest.fixture
def recorded_jobs() -> RecordedJobs:
    recorded = RecordedJobs()
    jobs.set_job_sender(lambda job, arguments: recorded.append((job, arguments)))
    return recorded


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"alerts_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{url}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        service_missing(f"Redis at {REDIS_URL}: {error}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """The migrated database of each backend, emptied after the test."""
    if request.param == "postgresql":
        postgres: Database = request.getfixturevalue("postgres_database")
        return postgres
    return get_database()


@pytest.fixture
def postgres_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The session's PostgreSQL database, migrated, and emptied after the test."""
    monkeypatch.setenv("ALERTS_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    database = get_database()
    yield database
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with database.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


class CountedStatements(list[str]):
    """The SQL statements an engine ran inside a ``count_queries`` block, in order."""


CountQueries = Callable[[Database], AbstractContextManager[CountedStatements]]


@pytest.fixture
def count_queries() -> CountQueries:
    """``with count_queries(database) as statements:`` records every statement
    the database's engine sends (all connections, the ledger's own included), so
    a test can pin how many a hot path costs and see an N+1 when it appears."""

    @contextmanager
    def counting(database: Database) -> Iterator[CountedStatements]:
        statements = CountedStatements()

        def record(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements.append(statement)

        event.listen(database.engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            event.remove(database.engine, "before_cursor_execute", record)

    return counting


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(WAIT_POLL_SECONDS)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class FeedServer:
    """A real HTTP server on loopback serving documents, honouring If-None-Match."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[int, bytes, str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        handler = self._handler_class()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def serve(
        self, path: str, body: bytes, content_type: str = "application/rss+xml", status: int = 200
    ) -> str:
        self.documents[path] = (status, body, content_type)
        return self.url(path)

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag_asked = self.headers.get("If-None-Match")
                server.requests.append((self.path, etag_asked))
                status, body, content_type = server.documents.get(
                    self.path, (404, b"missing", "text/plain")
                )
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if status == 200 and etag_asked == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        return Handler


# What tests that fetch from their own loopback servers allow on purpose: the
# outbound guard refuses loopback unless the operator's allow-list names it.
LOOPBACK_NETWORKS = "127.0.0.0/8, ::1"


@pytest.fixture
def allow_loopback_fetches(monkeypatch: pytest.MonkeyPatch) -> str:
    """Let sources and webhooks reach servers on loopback, as an operator could allow."""
    monkeypatch.setenv("ALERTS_FETCH_ALLOWED_NETWORKS", LOOPBACK_NETWORKS)
    get_settings.cache_clear()
    return LOOPBACK_NETWORKS


@pytest.fixture
def feed_server(allow_loopback_fetches: str) -> Iterator[FeedServer]:
    server = FeedServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
