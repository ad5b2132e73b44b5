"""The request's unit of work (``alerts.web.dependencies.SessionDep``) commits
before the response starts, and a commit that fails is never answered with a 2xx.

FastAPI 0.106 and later run a ``yield`` dependency's teardown after the
response has been sent unless it is declared ``scope="function"``. The test
client only hands back a response once the whole app has returned, so it
cannot tell the two orders apart; these tests look from inside instead: an
ASGI wrapper reads the table over its own connection at the moment the app
starts its response, which is when a client could first act on the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts.db import Database, utcnow
from alerts.models import Role, Source
from alerts.users import create_api_token, create_user
from alerts.web.app import create_app

PASSWORD = "correct horse battery"
# A source whose row PostgreSQL refuses at COMMIT (a deferred constraint trigger):
# the INSERT and the route succeed, only the commit fails.
REFUSED_URL = "https://feeds.example/refused-at-commit.xml"


@dataclass
class ResponseStarts:
    """An ASGI wrapper: at each ``http.response.start``, the status and what ``look`` saw."""

    app: ASGIApp
    look: Callable[[], int]
    seen: list[tuple[int, int]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((message["status"], self.look()))
            await send(message)

        await self.app(scope, receive, watched)


def stored_sources(database: Database, url: str) -> Callable[[], int]:
    """How many sources with ``url`` another connection sees (committed rows only)."""

    def count() -> int:
        with database.session_scope() as session:
            return session.scalar(select(func.count(Source.id)).where(Source.url == url)) or 0

    return count


def editor_token(database: Database) -> dict[str, str]:
    with database.session_scope() as session:
        user = create_user(session, "test", "writer@example.org", PASSWORD, Role.EDITOR, utcnow())
        secret = create_api_token(session, "test", user, "tests", utcnow()).secret
    return {"Authorization": f"Bearer {secret}"}


def test_a_write_is_committed_before_its_201_and_200_start(database: Database) -> None:
    auth = editor_token(database)
    url = "https://feeds.example/desk.xml"
    watch = ResponseStarts(create_app(), stored_sources(database, url))
    client = TestClient(watch)

    created = client.post("/api/sources", headers=auth, json={"url": url, "name": "Desk"})
    assert created.status_code == 201
    assert watch.seen == [(201, 1)]  # the row was there when the answer began
    source_id = created.json()["id"]
    assert client.get(f"/api/sources/{source_id}", headers=auth).json()["name"] == "Desk"

    renamed = client.patch(f"/api/sources/{source_id}", headers=auth, json={"name": "Night desk"})
    assert renamed.status_code == 200
    with database.session_scope() as session:
        assert session.get(Source, source_id).name == "Night desk"  # type: ignore[union-attr]
    assert client.get("/api/sources", headers=auth).json()[0]["name"] == "Night desk"


def test_a_failing_commit_answers_500_not_201(postgres_database: Database) -> None:
    database = postgres_database
    auth = editor_token(database)
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse_marked_source() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN IF NEW.url LIKE '%refused-at-commit%' THEN "
                "RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER refuse_marked_source AFTER INSERT ON sources "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                "EXECUTE FUNCTION refuse_marked_source()"
            )
        )
    try:
        watch = ResponseStarts(create_app(), stored_sources(database, REFUSED_URL))
        client = TestClient(watch, raise_server_exceptions=False)
        answer = client.post("/api/sources", headers=auth, json={"url": REFUSED_URL})
        assert answer.status_code == 500
        assert [status for status, _ in watch.seen] == [500]  # no 2xx was ever started
        assert stored_sources(database, REFUSED_URL)() == 0
        # The next request works: the failed unit of work left nothing behind.
        fine = client.post("/api/sources", headers=auth, json={"url": "https://feeds.example/a"})
        assert fine.status_code == 201
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER refuse_marked_source ON sources"))
            connection.execute(text("DROP FUNCTION refuse_marked_source()"))
