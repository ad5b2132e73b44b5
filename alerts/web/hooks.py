"""``POST /hooks/bounces/{provider}``: sending providers tell us of bounces and complaints.

The call is checked with that provider's secret before anything is read from
it; a refused call gets a 401 (or 404 for a provider we do not know) and
changes nothing. A call already recorded answers 200 again, so the provider
stops retrying, and records nothing twice.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.bounces import record
from alerts.config import get_settings
from alerts.db import utcnow
from alerts.models import RateEvent
from alerts.provider_events import (
    MAX_EVENT_BYTES,
    PROVIDERS,
    Events,
    ProviderEventError,
    SignedCall,
    read_events,
)
from alerts.web.dependencies import SessionDep

router = APIRouter()


def _basic_password(request: Request) -> str | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        _user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password


async def _body(request: Request) -> bytes:
    """The raw body, read on the event loop so that the route can be a plain ``def``."""
    return await request.body()


BodyDep = Annotated[bytes, Depends(_body)]


def _record(session: Session, events: Events) -> dict[str, int | bool]:
    settings = get_settings()
    now = utcnow()
    if events.replay_key:
        seen = session.scalar(select(RateEvent.id).where(RateEvent.key == events.replay_key))
        if seen is not None:
            return {"recorded": 0, "replay": True}
        # Kept for days (retention); a signed call is refused as stale after minutes.
        session.add(RateEvent(key=events.replay_key, at=now))
    recorded = [
        outcome
        for report in events.reports
        for outcome in record(session, report, settings, now, proven=True)
    ]
    return {"recorded": len(recorded), "replay": False}


@router.post("/hooks/bounces/{provider}")
def provider_event(
    provider: str, request: Request, body: BodyDep, session: SessionDep
) -> JSONResponse:
    if provider not in PROVIDERS:
        return JSONResponse({"error": f"unknown provider {provider!r}"}, status_code=404)
    if len(body) > MAX_EVENT_BYTES:
        return JSONResponse({"error": "the event is too large"}, status_code=413)
    call = SignedCall(
        body=body,
        headers={name.lower(): value for name, value in request.headers.items()},
        basic_password=_basic_password(request),
    )
    try:
        events = read_events(provider, call, get_settings(), utcnow())
    except ProviderEventError as error:
        return JSONResponse({"error": str(error)}, status_code=401)
    return JSONResponse(_record(session, events))
