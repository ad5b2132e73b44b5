"""Deeply nested queries at every entry point, a broken stored interest, the
bounded and rate-limited public preview, on SQLite and PostgreSQL.

The query of the attack report: 240 levels of parentheses. Every path that
stores an interest must refuse it with a 4xx, a clear message or a reported
row, never a 500 or a traceback; and an interest that got in before the limit
existed must cost only its own reader their matches.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alerts.cli import main
from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.matching.query import DEFAULT_MAX_DEPTH
from alerts.matching.service import IndexCache, match_articles, reached_matches
from alerts.metrics import INTERESTS_SKIPPED, PREVIEW_ARTICLES
from alerts.models import Article, Interest, Match, RateEvent, Role, Subscriber
from alerts.regions import default_gazetteer
from alerts.signup import PREVIEW_LIMIT, RateLimitedError, count_form_helper_call
from alerts.subscribers import NewSubscriber, add_subscriber
from alerts.web.app import create_app
from tests.conftest import RecordedJobs
from tests.integration.test_api import make_token
from tests.integration.test_web_admin import ADMIN, add_user, form_token, signed_in
from tests.integration.test_web_public import Site, confirmed_reader, preferences_path

DEEP = "(" * 240 + "referendum" + ")" * 240
REFUSAL = "nested too deeply"


@pytest.fixture
def site(database: Database, recorded_jobs: RecordedJobs) -> Site:
    return Site(database)


def subscriber_count(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count(Subscriber.id))) or 0)


def stored_queries(database: Database) -> list[str | None]:
    with database.session_scope() as session:
        return list(session.scalars(select(Interest.query).order_by(Interest.id)))


# --- every entry point refuses the deep query -----------------------------------


def test_sign_up_refuses_it_on_the_form(site: Site) -> None:
    response = site.sign_up("deep@example.org", query=DEEP)
    assert response.status_code == 400
    assert REFUSAL in response.text
    assert site.subscriber("deep@example.org") is None


def test_the_preference_centre_refuses_it_when_adding_and_editing(site: Site) -> None:
    reader = confirmed_reader(site)
    centre = preferences_path(reader)
    added = site.post(f"{centre}/interests", {"query": DEEP})
    assert added.status_code == 400
    assert REFUSAL in added.text
    [interest] = site.interests(reader)
    edited = site.post(f"{centre}/interests/{interest.id}", {"query": DEEP})
    assert edited.status_code == 400
    assert REFUSAL in edited.text
    assert [i.query for i in site.interests(reader)] == ["referendum"]


def test_the_form_helpers_answer_it_with_the_place(site: Site) -> None:
    checked = site.client.get("/api/query-check", params={"q": DEEP})
    assert checked.status_code == 200
    assert checked.json()["ok"] is False
    assert REFUSAL in checked.json()["message"]
    assert checked.json()["position"] == DEFAULT_MAX_DEPTH
    previewed = site.client.get("/api/preview", params={"q": DEEP})
    assert previewed.status_code == 200
    assert previewed.json()["ok"] is False
    assert REFUSAL in previewed.json()["message"]


def test_the_api_refuses_it_on_create_and_update(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    client = TestClient(create_app())
    auth = {"Authorization": f"Bearer {make_token(database, 'boss@example.org', Role.ADMIN)}"}
    deep_reader = client.post(
        "/api/subscribers", headers=auth, json={"email": "d@example.org", "query": DEEP}
    )
    assert deep_reader.status_code == 422
    assert REFUSAL in deep_reader.json()["detail"]
    reader = client.post(
        "/api/subscribers", headers=auth, json={"email": "r@example.org", "query": "flood"}
    ).json()
    created = client.post(
        "/api/interests", headers=auth, json={"subscriber_id": reader["id"], "query": DEEP}
    )
    assert created.status_code == 422
    assert REFUSAL in created.json()["detail"]
    interest_id = reader["interests"][0]["id"]
    updated = client.patch(f"/api/interests/{interest_id}", headers=auth, json={"query": DEEP})
    assert updated.status_code == 422
    assert REFUSAL in updated.json()["detail"]
    assert stored_queries(database) == ["flood"]


def test_the_command_line_refuses_it(
    database: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["subscribers", "add", "d@example.org", "--query", DEEP]) == 2
    assert REFUSAL in capsys.readouterr().err
    assert main(["interests", "preview", DEEP]) == 2
    assert REFUSAL in capsys.readouterr().err
    interests = tmp_path / "interests.jsonl"
    interests.write_text(json.dumps({"id": "deep", "query": DEEP}) + "\n")
    articles = tmp_path / "articles.jsonl"
    articles.write_text(json.dumps({"id": "a", "title": "referendum"}) + "\n")
    assert main(["match", "--interests", str(interests), "--articles", str(articles)]) == 2
    assert REFUSAL in capsys.readouterr().err
    assert subscriber_count(database) == 0


def test_the_csv_imports_report_its_row_and_keep_the_others(
    database: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = f"email,query\nfirst@example.org,flood\ndeep@example.org,{DEEP}\nlast@example.org,tram\n"
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(rows)
    assert main(["subscribers", "import", str(csv_file)]) == 1
    captured = capsys.readouterr()
    assert "2 added, 1 rejected" in captured.out
    assert f"{csv_file}:3: query: {REFUSAL}" in captured.err
    assert "Traceback" not in captured.err

    add_user(database, ADMIN, Role.ADMIN)
    client = signed_in(ADMIN)
    response = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": form_token(client, "/admin/subscribers/import")},
        files={"file": ("readers.csv", rows.replace("@", "2@").encode(), "text/csv")},
    )
    assert response.status_code == 200
    assert "2 added, 1 rejected" in response.text
    assert "<td>3</td>" in response.text
    assert REFUSAL in response.text
    assert stored_queries(database) == ["flood", "tram", "flood", "tram"]


# --- a broken stored interest costs only its reader -------------------------------


def test_matching_skips_and_records_a_broken_stored_interest(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    settings = get_settings()
    with database.session_scope() as session:
        readers = [
            add_subscriber(
                session,
                NewSubscriber(email=f"{name}@example.org", query=query, confirmed=True),
                settings,
                now,
            )
            for name, query in (
                ("anna", "referendum"),
                ("boris", "referendum OR annex*"),
                ("deep", "flood"),
                ("lost", "flood"),
            )
        ]
        # Stored straight into the table, as before the limit existed (or
        # after it was lowered): the sign-up's validation never saw them.
        deep, lost = readers[2], readers[3]
        deep.interests[0].query = DEEP
        lost.interests[0].regions = ["atlantis"]
        article = Article(
            title="Referendum date set",
            body="The referendum is in spring.",
            fingerprint="fp",
            title_key="tk",
            language="en",
            ingested_at=now,
        )
        session.add(article)
        session.flush()
        article_id, ids = article.id, [r.id for r in readers]
    cache = IndexCache(default_gazetteer(), settings)
    with (
        caplog.at_level(logging.WARNING, logger="alerts.matching"),
        database.session_scope() as session,
    ):
        new = match_articles(session, [article_id], cache, now)
        reached = session.execute(reached_matches(article_ids=[m.article_id for m in new]))
        readers_reached = sorted(row.subscriber_id for row in reached)
    assert readers_reached == ids[:2]
    assert set(cache.broken) == {ids[2], ids[3]}  # interest ids equal reader ids here
    assert REFUSAL in cache.broken[ids[2]]
    assert INTERESTS_SKIPPED._value.get() == 2
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert any(REFUSAL in message for message in skipped)
    with database.session_scope() as session:
        assert session.scalar(select(func.count(Match.id))) == 2

    # fixed by the reader: filed at the next refresh, no longer counted as skipped
    with database.session_scope() as session:
        fixed = session.get(Interest, ids[2])
        assert fixed is not None
        fixed.query, fixed.updated_at = "referendum", utcnow()
        # A new article arrives (the first one is done in the match ledger).
        later = Article(
            title="Referendum turnout",
            body="Turnout at the referendum was high.",
            fingerprint="fp2",
            title_key="tk2",
            language="en",
            ingested_at=now,
        )
        session.add(later)
        session.flush()
        later_id = later.id
    with database.session_scope() as session:
        match_articles(session, [later_id], cache, now)
    assert set(cache.broken) == {ids[3]}
    assert INTERESTS_SKIPPED._value.get() == 1


# --- the public preview: rate-limited and bounded ----------------------------------


def add_articles(database: Database, count: int, title: str, start: int = 0) -> None:
    now = utcnow()
    with database.session_scope() as session:
        session.add_all(
            Article(
                title=f"{title} {n}",
                body="Rain all week.",
                fingerprint=f"fp{n}",
                title_key=f"tk{n}",
                language="en",
                # the higher n, the newer
                ingested_at=now - timedelta(days=1) + timedelta(seconds=n),
            )
            for n in range(start, start + count)
        )


@pytest.mark.parametrize("path", ["/api/preview", "/api/query-check"])
def test_form_helpers_are_rate_limited_per_client(
    database: Database, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setenv("ALERTS_PREVIEW_PER_MINUTE", "3")
    get_settings.cache_clear()
    one, other = Site(database, "192.0.2.1"), Site(database, "192.0.2.2")
    for _ in range(3):
        assert one.client.get(path, params={"q": "flood"}).status_code == 200
    refused = one.client.get(path, params={"q": "flood"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json()["ok"] is False
    assert refused.json()["limited"] is True
    assert "Too many" in refused.json()["message"]
    assert "wait a minute" in refused.json()["message"]
    assert other.client.get(path, params={"q": "flood"}).status_code == 200
    # the other helper has its own budget: typing does not use up the preview
    sibling = "/api/query-check" if path == "/api/preview" else "/api/preview"
    assert one.client.get(sibling, params={"q": "flood"}).status_code == 200


def test_the_rate_limit_window_is_a_minute(database: Database) -> None:
    settings = get_settings().model_copy(update={"preview_per_minute": 2})
    now = utcnow()
    with database.session_scope() as session:
        count_form_helper_call(session, "preview", "192.0.2.9", settings, now)
        count_form_helper_call(session, "preview", "192.0.2.9", settings, now)
        with pytest.raises(RateLimitedError):
            count_form_helper_call(session, "preview", "192.0.2.9", settings, now)
        count_form_helper_call(session, "preview", "192.0.2.8", settings, now)
        later = now + timedelta(seconds=61)
        count_form_helper_call(session, "preview", "192.0.2.9", settings, later)
        # the address is not stored in clear text, and expired events of every
        # client are gone: only the latest call is left
        keys = list(session.scalars(select(RateEvent.key)))
        assert len(keys) == 1
        assert "192.0.2.9" not in keys[0]


def test_the_preview_looks_at_the_newest_articles_only_and_stops_early(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_PREVIEW_MAX_ARTICLES", "10")
    get_settings.cache_clear()
    add_articles(site.database, 5, "Referendum in the old days")  # older than the window
    add_articles(site.database, 30, "Flood", start=5)

    before = PREVIEW_ARTICLES._value.get()
    found = site.client.get("/api/preview", params={"q": "referendum"}).json()
    assert found == {"ok": True, "articles": []}
    assert PREVIEW_ARTICLES._value.get() - before == 10

    before = PREVIEW_ARTICLES._value.get()
    flood = site.client.get("/api/preview", params={"q": "flood"}).json()
    assert [a["title"] for a in flood["articles"]] == [f"Flood {n}" for n in range(34, 29, -1)]
    # enough hits after the first few: the rest of the window is not analysed
    assert PREVIEW_ARTICLES._value.get() - before == PREVIEW_LIMIT


def test_the_command_line_preview_keeps_its_contract_and_takes_a_bound(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    add_articles(database, 3, "Referendum", start=0)
    add_articles(database, 20, "Flood", start=3)
    assert main(["interests", "preview", "referendum", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    before = PREVIEW_ARTICLES._value.get()
    assert main(["interests", "preview", "referendum", "--json", "--max-articles", "10"]) == 0
    assert capsys.readouterr().out == ""
    assert PREVIEW_ARTICLES._value.get() - before == 10
