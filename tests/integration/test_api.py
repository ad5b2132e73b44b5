"""The JSON API and the ``alerts users`` commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from alerts.cli import main
from alerts.db import Database, utcnow
from alerts.models import (
    ApiToken,
    AuditEntry,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Role,
    Subscriber,
    User,
)
from alerts.users import create_api_token, create_user, revoke_api_token, set_active
from alerts.web.app import create_app
from tests.conftest import RecordedJobs
from tests.factories import audit_actions

SAMPLE = Path(__file__).parents[2] / "sample"
PASSWORD = "correct horse battery"


def make_token(database: Database, email: str, role: Role) -> str:
    with database.session_scope() as session:
        user = create_user(session, "test", email, PASSWORD, role, utcnow())
        return create_api_token(session, "test", user, "tests", utcnow()).secret


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def admin_auth(database: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(database, 'boss@example.org', Role.ADMIN)}"}


@pytest.fixture
def editor_auth(database: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(database, 'writer@example.org', Role.EDITOR)}"}


def test_tokens_missing_wrong_or_revoked_get_401(
    database: Database, client: TestClient, admin_auth: dict[str, str]
) -> None:
    missing = client.get("/api/subscribers")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (
        client.get("/api/articles", headers={"Authorization": "Bearer alerts_nope"}).status_code
        == 401
    )
    assert (
        client.get("/api/articles", headers={"Authorization": "Basic Ym9zczp4"}).status_code == 401
    )
    assert client.get("/api/articles", headers=admin_auth).status_code == 200

    with database.session_scope() as session:
        token = session.scalars(select(ApiToken)).one()
        assert token.last_used_at is not None
        revoke_api_token(session, "test", token, utcnow())
    assert client.get("/api/articles", headers=admin_auth).status_code == 401

    other = make_token(database, "other@example.org", Role.ADMIN)
    with database.session_scope() as session:
        user = session.scalars(select(User).where(User.email == "other@example.org")).one()
        set_active(session, "test", user, False, utcnow())
    assert (
        client.get("/api/articles", headers={"Authorization": f"Bearer {other}"}).status_code == 401
    )


def test_the_sign_up_forms_public_endpoints_need_no_token(
    database: Database, client: TestClient
) -> None:
    assert client.get("/api/query-check", params={"q": "referendum"}).status_code == 200
    assert client.get("/api/regions", params={"q": "Tskh"}).status_code == 200


def test_subscribers_list_get_create_update_delete(
    database: Database, client: TestClient, admin_auth: dict[str, str], recorded_jobs: RecordedJobs
) -> None:
    created = client.post(
        "/api/subscribers",
        headers=admin_auth,
        json={
            "email": "Reader@Example.org",
            "query": "referendum",
            "regions": ["Tskhinvali Region"],
            "frequency": "weekly",
            "timezone": "Asia/Tbilisi",
            "send_at": "06:30",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == "reader@example.org"
    assert body["status"] == "pending"
    assert body["interests"][0]["regions"] == ["ge-so"]
    assert len(recorded_jobs.named("send_alerts")) == 1  # the opt-in mail, after commit
    subscriber_id = body["id"]

    again = client.post(
        "/api/subscribers", headers=admin_auth, json={"email": "reader@example.org"}
    )
    assert again.status_code == 409
    bad_query = client.post(
        "/api/subscribers", headers=admin_auth, json={"email": "b@example.org", "query": "(tram"}
    )
    assert bad_query.status_code == 422
    assert "unbalanced" in bad_query.json()["detail"]
    assert "position 0" in bad_query.json()["detail"]
    bad_address = client.post("/api/subscribers", headers=admin_auth, json={"email": "nope"})
    assert bad_address.status_code == 422
    assert client.post("/api/subscribers", headers=admin_auth, json={}).status_code == 422

    listed = client.get("/api/subscribers", headers=admin_auth, params={"email": "reader"}).json()
    assert [s["id"] for s in listed] == [subscriber_id]
    assert (
        client.get("/api/subscribers", headers=admin_auth, params={"status": "confirmed"}).json()
        == []
    )
    assert client.get(f"/api/subscribers/{subscriber_id}", headers=admin_auth).json()[
        "timezone"
    ] == ("Asia/Tbilisi")

    updated = client.patch(
        f"/api/subscribers/{subscriber_id}",
        headers=admin_auth,
        json={"frequency": "daily", "paused": True, "status": "suspended"},
    )
    assert updated.status_code == 200
    assert (updated.json()["frequency"], updated.json()["paused"], updated.json()["status"]) == (
        "daily",
        True,
        "suspended",
    )
    bad_zone = client.patch(
        f"/api/subscribers/{subscriber_id}", headers=admin_auth, json={"timezone": "Mars/Olympus"}
    )
    assert bad_zone.status_code == 422

    assert client.delete(f"/api/subscribers/{subscriber_id}", headers=admin_auth).status_code == 204
    assert client.get(f"/api/subscribers/{subscriber_id}", headers=admin_auth).status_code == 404
    with database.session_scope() as session:
        assert session.scalars(select(Subscriber)).all() == []
        details = [e.detail for e in session.scalars(select(AuditEntry))]
    actions = [action for action, _, _ in audit_actions(database)]
    assert actions == [
        "subscriber.add",
        "subscriber.edit",
        "subscriber.suspend",
        "subscriber.erase",
    ]
    assert "reader@example.org" not in repr(details)


def test_interests_list_get_create_update_delete(
    database: Database, client: TestClient, admin_auth: dict[str, str], recorded_jobs: RecordedJobs
) -> None:
    subscriber = client.post(
        "/api/subscribers",
        headers=admin_auth,
        json={"email": "reader@example.org", "query": "flood", "confirmed": True},
    ).json()
    assert [i["query"] for i in subscriber["interests"]] == ["flood"]
    created = client.post(
        "/api/interests",
        headers=admin_auth,
        json={"subscriber_id": subscriber["id"], "query": "annex* OR referendum"},
    )
    assert created.status_code == 201
    interest_id = created.json()["id"]

    refused = client.post(
        "/api/interests",
        headers=admin_auth,
        json={"subscriber_id": subscriber["id"], "query": "-referendum"},
    )
    assert refused.status_code == 422
    assert "query" in refused.json()["detail"]
    empty = client.post(
        "/api/interests", headers=admin_auth, json={"subscriber_id": subscriber["id"]}
    )
    assert empty.status_code == 422
    unknown_region = client.post(
        "/api/interests",
        headers=admin_auth,
        json={"subscriber_id": subscriber["id"], "regions": ["Atlantis"]},
    )
    assert unknown_region.status_code == 422
    assert "Atlantis" in unknown_region.json()["detail"]
    orphan = client.post(
        "/api/interests", headers=admin_auth, json={"subscriber_id": 999, "query": "x"}
    )
    assert orphan.status_code == 404

    patched = client.patch(
        f"/api/interests/{interest_id}", headers=admin_auth, json={"regions": ["Abkhazia"]}
    )
    assert patched.status_code == 200
    assert patched.json()["query"] == "annex* OR referendum"
    assert patched.json()["regions"] == ["ge-ab"]
    bad = client.patch(f"/api/interests/{interest_id}", headers=admin_auth, json={"query": "(x"})
    assert bad.status_code == 422

    listed = client.get(
        "/api/interests", headers=admin_auth, params={"subscriber_id": subscriber["id"]}
    )
    assert [i["id"] for i in listed.json()][1:] == [interest_id]
    assert client.get(f"/api/interests/{interest_id}", headers=admin_auth).status_code == 200
    assert client.delete(f"/api/interests/{interest_id}", headers=admin_auth).status_code == 204
    assert client.get(f"/api/interests/{interest_id}", headers=admin_auth).status_code == 404


def test_sources_articles_newsletters_and_deliveries(
    database: Database,
    client: TestClient,
    admin_auth: dict[str, str],
    editor_auth: dict[str, str],
    recorded_jobs: RecordedJobs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = client.post(
        "/api/sources",
        headers=editor_auth,
        json={"url": "https://feeds.example/desk.xml", "name": "Desk", "poll_minutes": 30},
    )
    assert source.status_code == 201
    assert source.json()["poll_minutes"] == 30
    duplicate = client.post(
        "/api/sources", headers=editor_auth, json={"url": "https://feeds.example/desk.xml"}
    )
    assert duplicate.status_code == 409
    assert (
        client.post(
            "/api/sources", headers=editor_auth, json={"url": "file:///etc/passwd"}
        ).status_code
        == 422
    )
    assert [s["name"] for s in client.get("/api/sources", headers=editor_auth).json()] == ["Desk"]
    paused = client.patch(
        f"/api/sources/{source.json()['id']}", headers=editor_auth, json={"active": False}
    )
    assert paused.json()["active"] is False

    assert main(["ingest", str(SAMPLE / "articles.jsonl")]) == 0
    capsys.readouterr()
    articles = client.get("/api/articles", headers=editor_auth, params={"limit": 2})
    assert articles.status_code == 200
    assert len(articles.json()) == 2
    first = articles.json()[0]
    assert (
        client.get(f"/api/articles/{first['id']}", headers=editor_auth).json()["title"]
        == (first["title"])
    )
    assert client.get("/api/articles", headers=editor_auth, params={"limit": 0}).status_code == 422
    assert client.get("/api/newsletters", headers=editor_auth).json() == []

    with database.session_scope() as session:
        session.add(
            Delivery(
                dedup_key="d1",
                kind=DeliveryKind.DIGEST,
                state=DeliveryState.FAILED,
                recipient="x@example.org",
                message_id="<1@x>",
                reason="550",
            )
        )
    deliveries = client.get("/api/deliveries", headers=admin_auth, params={"state": "failed"})
    assert [d["reason"] for d in deliveries.json()] == ["550"]
    assert client.get("/api/deliveries", headers=admin_auth, params={"state": "sent"}).json() == []

    # Editors manage sources and read articles; people's data stays with admins.
    assert client.get("/api/deliveries", headers=editor_auth).status_code == 403
    assert client.get("/api/subscribers", headers=editor_auth).status_code == 403
    assert (
        client.post("/api/interests", headers=editor_auth, json={"subscriber_id": 1}).status_code
        == 403
    )

    assert (
        client.delete(f"/api/sources/{source.json()['id']}", headers=editor_auth).status_code == 204
    )
    assert client.get("/api/sources", headers=editor_auth).json() == []


def test_openapi_document_lists_the_api(database: Database, client: TestClient) -> None:
    document = client.get("/api/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    assert spec["servers"] == [{"url": "/api"}]
    for path in (
        "/subscribers",
        "/subscribers/{subscriber_id}",
        "/interests",
        "/sources",
        "/articles",
        "/newsletters",
        "/deliveries",
    ):
        assert path in spec["paths"], path
    assert set(spec["paths"]["/subscribers"]) == {"get", "post"}
    assert set(spec["paths"]["/subscribers/{subscriber_id}"]) == {"get", "patch", "delete"}
    assert "SubscriberCreate" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert not any(path.startswith("/admin") for path in spec["paths"])


def test_users_commands_add_list_and_make_tokens(
    database: Database,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    assert main(["users", "add", "Boss@Example.org", "--role", "admin", "--password-stdin"]) == 0
    assert "boss@example.org (admin)" in capsys.readouterr().out
    assert main(["users", "add", "writer@example.org", "--generate-password"]) == 0
    out = capsys.readouterr().out
    assert "writer@example.org (editor)" in out
    assert "password: " in out
    assert main(["users", "add", "boss@example.org", "--generate-password"]) == 2
    assert "already has an account" in capsys.readouterr().err

    assert main(["users", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["email"], r["role"]) for r in rows] == [
        ("boss@example.org", "admin"),
        ("writer@example.org", "editor"),
    ]

    assert main(["users", "token", "boss@example.org", "--name", "cms"]) == 0
    token = capsys.readouterr().out.strip()
    assert (
        client.get("/api/subscribers", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert main(["users", "token", "nobody@example.org", "--name", "x"]) == 2
    with database.session_scope() as session:
        assert session.scalars(select(ApiToken.token_hash)).one() != token  # only a hash is kept
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["user.add", "user.add", "token.create"]
