"""What every page relies on: CSRF tokens, signed sessions, security headers.

CSRF uses a signed double-submit token: a random value in a cookie, and in
each form the HMAC of that value. A POST is accepted only when the form's
token matches the cookie, so a page on another site, which can neither read
the cookie nor compute the MAC, cannot forge a form post.

Sessions are a signed cookie naming the user and when they signed in; it is
refused once the user changes their password (``password_changed_at``), is
deactivated, or the session is older than ``SESSION_MAX_AGE``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fastapi import HTTPException, Request, Response
from sqlalchemy.orm import Session

from alerts.config import get_settings
from alerts.db import utcnow
from alerts.i18n import N_
from alerts.models import User
from alerts.tokens import InvalidToken, sign_token, verify_token

CSRF_COOKIE = "alerts_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "alerts_session"
SESSION_PURPOSE = "session"
SESSION_MAX_AGE = timedelta(hours=12)
# Scripts and styles only from our own origin; no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class CsrfError(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            status_code=403,
            detail=N_(
                "This form has expired or did not come from this site. "
                "Go back, reload the page and try again."
            ),
        )


def _csrf_mac(value: str) -> str:
    secret = get_settings().resolved_secret_key
    return hmac.new(f"csrf:{secret}".encode(), value.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token to put in this page's forms (the cookie is set by the middleware)."""
    value: str = request.state.csrf_cookie
    return _csrf_mac(value)


async def require_csrf(request: Request) -> None:
    """Refuse a form post whose token does not match the browser's cookie."""
    cookie = request.cookies.get(CSRF_COOKIE)
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token")
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(_csrf_mac(cookie), sent):
        raise CsrfError


async def security_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Give each browser a CSRF cookie and each response the security headers."""
    cookie = request.cookies.get(CSRF_COOKIE)
    request.state.csrf_cookie = cookie or secrets.token_urlsafe(32)
    response = await call_next(request)
    if not cookie:
        response.set_cookie(
            CSRF_COOKIE,
            request.state.csrf_cookie,
            httponly=True,
            samesite="lax",
            secure=get_settings().base_url.startswith("https://"),
        )
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def start_session(response: Response, user: User, now: datetime) -> None:
    token = sign_token(
        get_settings().resolved_secret_key,
        SESSION_PURPOSE,
        f"{user.id}:{_millis(now)}",
        expires_at=now + SESSION_MAX_AGE,
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        max_age=int(SESSION_MAX_AGE.total_seconds()),
        secure=get_settings().base_url.startswith("https://"),
    )


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE)


def session_user(request: Request, session: Session) -> User | None:
    """The signed-in user, or None when the cookie is missing, forged, expired,
    or older than the user's last password change."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        subject = verify_token(
            get_settings().resolved_secret_key, SESSION_PURPOSE, token, now=utcnow()
        )
        user_id, _, issued = subject.partition(":")
        user = session.get(User, int(user_id))
        issued_millis = int(issued)
    except (InvalidToken, ValueError):
        return None
    if user is None or not user.active or issued_millis < _millis(user.password_changed_at):
        return None
    return user


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
