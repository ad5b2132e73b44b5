"""Pages for readers: reached without a password, through signed links."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.outbound import UNSUBSCRIBE_PURPOSE
from alerts.subscribers import unsubscribe
from alerts.tokens import InvalidToken, verify_token
from alerts.web.templating import templates

router = APIRouter()


def subscriber_from(token: str, purpose: str) -> int:
    """The subscriber a signed link names; a clear 400 page when it is not valid."""
    try:
        subject = verify_token(get_settings().resolved_secret_key, purpose, token, now=utcnow())
    except InvalidToken as error:
        raise HTTPException(status_code=400, detail=f"This link is not valid: {error}.") from error
    return int(subject)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> Any:
    """A page with a button: link scanners that fetch URLs change nothing."""
    subscriber_from(token, UNSUBSCRIBE_PURPOSE)
    return templates.TemplateResponse(request, "unsubscribe.html", {"token": token, "done": False})


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_now(request: Request, token: str) -> Any:
    """RFC 8058 one-click: mail clients POST ``List-Unsubscribe=One-Click`` here.

    The signed token is the credential, so no CSRF token is asked for: a mail
    client cannot have one, and the worst a forged post can do is what the
    link's owner asked for.
    """
    subscriber_id = subscriber_from(token, UNSUBSCRIBE_PURPOSE)
    with get_database().session_scope() as session:
        unsubscribe(session, subscriber_id, utcnow())
    return templates.TemplateResponse(request, "unsubscribe.html", {"token": token, "done": True})
