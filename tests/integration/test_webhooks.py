"""Outgoing webhooks: a real receiver on loopback checks the signature; a failing
one gets retries through the ledger. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from alerts.config import get_settings
from alerts.db import Database, utcnow
from alerts.models import DeliveryState, WebhookDelivery
from alerts.netguard import Outbound
from alerts.signup import ConfirmOutcome, confirm
from alerts.subscribers import NewSubscriber, add_subscriber, unsubscribe
from alerts.webhooks import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookError,
    add_endpoint,
    deliver,
    due_retries,
    emit,
    verify,
)
from tests.conftest import FeedServer, RecordedJobs


def guard() -> Outbound:
    """The guard the settings describe (the fixtures allow loopback), as the worker builds it."""
    return Outbound.from_settings(get_settings())


class Receiver(FeedServer):
    """The loopback HTTP server of the feed tests, answering POSTs with a set status."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        handler = self.httpd.RequestHandlerClass
        receiver = self

        def do_post(request: object) -> None:
            length = int(request.headers["Content-Length"])  # type: ignore[attr-defined]
            body = request.rfile.read(length)  # type: ignore[attr-defined]
            receiver.posts.append((dict(request.headers), body))  # type: ignore[attr-defined]
            request.send_response(receiver.status)  # type: ignore[attr-defined]
            request.end_headers()  # type: ignore[attr-defined]
            request.wfile.write(b"thanks" if receiver.status == 200 else b"broken")  # type: ignore[attr-defined]

        handler.do_POST = do_post  # type: ignore[attr-defined]


@pytest.fixture
def receiver(allow_loopback_fetches: str) -> Receiver:
    server = Receiver()
    server.thread.start()
    yield server  # type: ignore[misc]
    server.httpd.shutdown()
    server.httpd.server_close()


def test_signed_event_reaches_the_receiver_and_verifies(
    database: Database, recorded_jobs: RecordedJobs, receiver: Receiver
) -> None:
    now = utcnow()
    with database.session_scope() as session:
        endpoint = add_endpoint(
            session, "test", receiver.url("/hook"), ["subscriber.unsubscribed"], now
        )
        secret = endpoint.secret
        subscriber = add_subscriber(
            session,
            NewSubscriber(email="leaving@example.org", query="x", confirmed=True),
            get_settings(),
            now,
        )
        unsubscribe(session, subscriber.id, now)
    [job] = recorded_jobs.named("deliver_webhooks")
    [attempt] = deliver(database, job["delivery_ids"], guard(), utcnow)
    assert attempt.status == 200
    [(headers, body)] = receiver.posts
    assert headers[EVENT_HEADER] == "subscriber.unsubscribed"
    assert verify(secret, headers[SIGNATURE_HEADER], body, utcnow())
    assert not verify(secret, headers[SIGNATURE_HEADER], body + b" ", utcnow())
    assert not verify("other-secret", headers[SIGNATURE_HEADER], body, utcnow())
    payload = json.loads(body)
    assert payload["data"] == {"subscriber_id": subscriber.id}
    assert "leaving@example.org" not in body.decode()
    with database.session_scope() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert (row.state, row.last_status, row.last_response) == (
            DeliveryState.SENT,
            200,
            "thanks",
        )


def test_failing_receiver_gets_retries_with_backoff(
    database: Database, recorded_jobs: RecordedJobs, receiver: Receiver
) -> None:
    now = utcnow()
    receiver.status = 500
    with database.session_scope() as session:
        add_endpoint(session, "test", receiver.url("/hook"), ["source.failing"], now)
        ids = emit(session, "source.failing", {"source_id": 3}, now)
    client = guard()
    assert [a.status for a in deliver(database, ids, client, lambda: now)] == [500]
    with database.session_scope() as session:
        assert due_retries(session, now) == []  # backing off
        later = now + timedelta(hours=1)
        assert due_retries(session, later) == ids
    receiver.status = 200
    assert [a.status for a in deliver(database, ids, client, lambda: later)] == [200]
    assert deliver(database, ids, client, lambda: later) == []  # settled: nothing twice
    assert len(receiver.posts) == 2
    with database.session_scope() as session:
        row = session.scalars(select(WebhookDelivery)).one()
        assert (row.state, row.attempts) == (DeliveryState.SENT, 2)


def test_bad_endpoints_are_refused(database: Database) -> None:
    with database.session_scope() as session:
        with pytest.raises(WebhookError, match="http"):
            add_endpoint(session, "test", "ftp://example.org", ["newsletter.sent"], utcnow())
        with pytest.raises(WebhookError, match="events"):
            add_endpoint(session, "test", "https://example.org", ["everything"], utcnow())


def test_confirming_emits_subscriber_confirmed_once(
    database: Database, recorded_jobs: RecordedJobs
) -> None:
    """Documented as an event since the start; the confirmation link now emits it."""
    now = utcnow()
    settings = get_settings()
    with database.session_scope() as session:
        add_endpoint(session, "test", "https://hooks.example.org/in", ["subscriber.confirmed"], now)
        reader = add_subscriber(
            session, NewSubscriber(email="reader@example.org", query="flood"), settings, now
        )
        reader_id = reader.id
    with database.session_scope() as session:
        assert confirm(session, reader_id, now, settings) is ConfirmOutcome.CONFIRMED
        assert confirm(session, reader_id, now, settings) is ConfirmOutcome.ALREADY
    with database.session_scope() as session:
        [row] = session.scalars(select(WebhookDelivery)).all()
    assert row.event == "subscriber.confirmed"
    assert row.payload["data"] == {"subscriber_id": reader_id}
