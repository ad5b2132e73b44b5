"""Outgoing webhooks: signed POSTs of events, through a ledger like mail.

An event is recorded once per subscribed endpoint (unique endpoint + event
id) in the transaction that caused it, and queued after commit. Each POST
carries ``X-Alerts-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the endpoint's secret>``, so a receiver can check both who
sent it and that it is fresh. A refused or failed POST is retried with
exponential backoff (the clock's sweeper picks up due retries), then failed.

POSTs go through the outbound guard (alerts.netguard): an endpoint on the
server's own network is refused when it is added and again at every POST.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from alerts import audit
from alerts.audit import Actor
from alerts.config import get_settings
from alerts.db import Database
from alerts.delivery.ledger import MAX_ATTEMPTS, retry_delay
from alerts.errors import InvalidInputError
from alerts.jobs import Job, enqueue_after_commit
from alerts.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from alerts.netguard import Outbound, OutboundError

EVENTS = frozenset(
    {
        "subscriber.confirmed",
        "subscriber.unsubscribed",
        "delivery.bounced",
        "newsletter.sent",
        "source.failing",
    }
)
JOB = Job.DELIVER_WEBHOOKS
SIGNATURE_HEADER = "X-Alerts-Signature"
EVENT_HEADER = "X-Alerts-Event"
TIMEOUT_SECONDS = 10
RESPONSE_KEPT_CHARS = 500  # of each answer, shown in the admin console
# Bytes read of an answer: enough for RESPONSE_KEPT_CHARS in any UTF-8 text.
RESPONSE_READ_BYTES = 4 * RESPONSE_KEPT_CHARS
SECRET_BYTES = 24


class WebhookError(InvalidInputError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, now: datetime, tolerance_seconds: int = 300
) -> bool:
    """What a receiver does; used by the tests and offered to integrators."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def check_url(url: str, outbound: Outbound | None = None) -> str:
    """The endpoint URL, or WebhookError when no POST could be allowed to reach it."""
    if not url.startswith(("https://", "http://")):
        raise WebhookError(f"{url!r} is not an http(s) URL")
    guard = outbound or Outbound.from_settings(get_settings())
    try:
        guard.check_url(url)
    except OutboundError as error:
        raise WebhookError(str(error)) from error
    return url


def add_endpoint(
    session: Session,
    actor: Actor,
    url: str,
    events: Sequence[str],
    now: datetime,
    outbound: Outbound | None = None,
) -> WebhookEndpoint:
    """Check the address and the events, add the endpoint with a new secret, audited."""
    check_url(url, outbound)
    unknown = sorted(set(events) - EVENTS)
    if unknown or not events:
        raise WebhookError(f"events must be some of {', '.join(sorted(EVENTS))}")
    endpoint = WebhookEndpoint(
        url=url, events=sorted(set(events)), secret=secrets.token_hex(SECRET_BYTES), created_at=now
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session, actor, "webhook.add", "webhook", endpoint.id, {"events": endpoint.events}, now
    )
    return endpoint


def emit(session: Session, event: str, data: dict[str, Any], now: datetime) -> list[int]:
    """Record ``event`` for every active endpoint that wants it; flush only."""
    if event not in EVENTS:
        raise WebhookError(f"unknown event {event!r}")
    endpoints = [
        e
        for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True)))
        if event in e.events
    ]
    if not endpoints:
        return []
    event_id = uuid.uuid4().hex
    payload = {"id": event_id, "event": event, "created_at": now.isoformat(), "data": data}
    rows = [
        WebhookDelivery(
            endpoint_id=e.id,
            event_id=event_id,
            event=event,
            payload=payload,
            due_at=now,
            created_at=now,
            updated_at=now,
        )
        for e in endpoints
    ]
    session.add_all(rows)
    session.flush()
    ids = [row.id for row in rows]
    enqueue_after_commit(session, JOB, delivery_ids=ids)
    return ids


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    status: int | None
    response: str


def claim(
    session: Session, ids: Sequence[int], now: datetime
) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
    claimed = session.scalars(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(ids),
            WebhookDelivery.state == DeliveryState.QUEUED,
            WebhookDelivery.due_at <= now,
        )
        .values(state=DeliveryState.SENDING, attempts=WebhookDelivery.attempts + 1, updated_at=now)
        .returning(WebhookDelivery.id)
    ).all()
    if not claimed:
        return []
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(claimed))
        .execution_options(populate_existing=True)
    )
    return [(delivery, endpoint) for delivery, endpoint in rows]


def post(
    outbound: Outbound, delivery: WebhookDelivery, endpoint: WebhookEndpoint, now: datetime
) -> Attempt:
    """One signed POST, redirects not followed; never raises for the receiver's faults."""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(endpoint.secret, int(now.timestamp()), body),
        EVENT_HEADER: delivery.event,
    }
    try:
        with outbound.open(
            "POST",
            endpoint.url,
            content=body,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            max_redirects=0,
        ) as reply:
            try:
                text = reply.read_prefix(RESPONSE_READ_BYTES).decode("utf-8", "replace")
            except OutboundError as error:  # the status counts even if the body is broken
                text = f"(answer unreadable: {error})"
            return Attempt(delivery.id, reply.status_code, text[:RESPONSE_KEPT_CHARS])
    except OutboundError as error:
        return Attempt(delivery.id, None, str(error)[:RESPONSE_KEPT_CHARS])


def record(session: Session, attempt: Attempt, attempts: int, now: datetime) -> None:
    values: dict[str, Any] = {
        "last_status": attempt.status,
        "last_response": attempt.response,
        "updated_at": now,
    }
    if attempt.status is not None and 200 <= attempt.status < 300:
        values |= {"state": DeliveryState.SENT, "delivered_at": now}
    elif attempts >= MAX_ATTEMPTS:
        values |= {"state": DeliveryState.FAILED}
    else:
        values |= {"state": DeliveryState.QUEUED, "due_at": now + retry_delay(attempts)}
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == attempt.delivery_id,
            WebhookDelivery.state == DeliveryState.SENDING,
        )
        .values(**values)
    )


def due_retries(session: Session, now: datetime) -> list[int]:
    """Queued deliveries whose backoff has ended (the sweeper queues them again)."""
    return list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.state == DeliveryState.QUEUED,
                WebhookDelivery.due_at <= now,
                WebhookDelivery.attempts > 0,
            )
        )
    )


def deliver(
    database: Database,
    delivery_ids: Sequence[int],
    outbound: Outbound,
    clock: Callable[[], datetime],
) -> list[Attempt]:
    """POST each claimed delivery and record its answer.

    Owns its transactions, like mail sending: a POST cannot be rolled back, so
    the claim commits before it and each answer commits after.
    """
    with database.session_scope() as session:
        claimed = claim(session, delivery_ids, clock())
    attempts = []
    for delivery, endpoint in claimed:
        attempt = post(outbound, delivery, endpoint, clock())
        with database.session_scope() as session:
            record(session, attempt, delivery.attempts, clock())
        attempts.append(attempt)
    return attempts


def overview(session: Session) -> list[dict[str, Any]]:
    """Each endpoint with its deliveries by state and its last answer.

    Three statements however many endpoints the console lists: the endpoints,
    the counts of every endpoint at once, and each endpoint's latest tried
    delivery picked by a window function (SQLite and PostgreSQL both have them).
    """
    endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
    counts: dict[int, dict[str, int]] = {endpoint.id: {} for endpoint in endpoints}
    for endpoint_id, state, count in session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.state, func.count(WebhookDelivery.id))
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.state)
        .order_by(WebhookDelivery.endpoint_id, WebhookDelivery.state)
    ):
        counts.setdefault(endpoint_id, {})[state.value] = count
    newest_first = (
        func.row_number()
        .over(
            partition_by=WebhookDelivery.endpoint_id,
            # The id breaks ties between deliveries updated in the same instant.
            order_by=(WebhookDelivery.updated_at.desc(), WebhookDelivery.id.desc()),
        )
        .label("newest_first")
    )
    tried = select(WebhookDelivery.id, newest_first).where(WebhookDelivery.attempts > 0).subquery()
    last_by_endpoint = {
        delivery.endpoint_id: delivery
        for delivery in session.scalars(
            select(WebhookDelivery)
            .join(tried, tried.c.id == WebhookDelivery.id)
            .where(tried.c.newest_first == 1)
        )
    }
    rows: list[dict[str, Any]] = []
    for endpoint in endpoints:
        last = last_by_endpoint.get(endpoint.id)
        rows.append(
            {
                "id": endpoint.id,
                "url": endpoint.url,
                "events": endpoint.events,
                "active": endpoint.active,
                "deliveries": counts[endpoint.id],
                "last_event": last.event if last else None,
                "last_at": last.updated_at.isoformat() if last else None,
                "last_status": last.last_status if last else None,
                "last_response": last.last_response if last else None,
            }
        )
    return rows


def deactivate(session: Session, actor: Actor, endpoint_id: int) -> bool:
    """Stop posting to an endpoint (its history stays); False when there is none."""
    found = bool(
        session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(active=False)
        ).rowcount  # type: ignore[attr-defined]
    )
    if found:
        audit.record(session, actor, "webhook.deactivate", "webhook", endpoint_id)
    return found


def remove_endpoint(
    session: Session, actor: Actor, endpoint_id: int, now: datetime, *, via: str | None = None
) -> bool:
    """Delete an endpoint, and with it (by cascade) its deliveries, and audit it.

    The one removal for every edge; a POST already in flight finds its row gone
    and records nothing. False when there is no such endpoint.
    """
    if session.get(WebhookEndpoint, endpoint_id) is None:
        return False
    deliveries = session.scalar(
        select(func.count(WebhookDelivery.id)).where(WebhookDelivery.endpoint_id == endpoint_id)
    )
    audit.record(
        session,
        actor,
        "webhook.delete",
        "webhook",
        endpoint_id,
        {"deliveries_removed": int(deliveries or 0)},
        now,
        via=via,
    )
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    session.expire_all()
    return True
