"""What every page relies on: who the client is, CSRF tokens, staff sessions, headers.

Client address: the TCP peer, unless the peer is one of the operator's
``ALERTS_TRUSTED_PROXIES``; only then is ``X-Forwarded-For`` read (from the
right, skipping our own proxies), so nobody can pick their address for the
rate limits by sending a header. ``X-Forwarded-Proto`` is believed on the same
terms. Requests whose ``Host`` is not in ``ALERTS_TRUSTED_HOSTS`` get 400, and
no redirect is ever built from the Host header (they are relative paths or
start from ``ALERTS_BASE_URL``).

CSRF: each browser holds a random value in a cookie that the server signs, so
a value an attacker makes up is replaced, not used. A form's token is an HMAC
of that value and of the staff session cookie when there is one; so a staff
member's tokens are bound to their sign-in, and a new sign-in (which also
gets a new CSRF cookie) makes every older token useless.

Sessions: the cookie holds a random secret; the database keeps its SHA-256 in
``web_sessions`` with the user, start, last use and end. Logout revokes the
row, as do a password change, a role change and deactivation (see
``alerts.users``), so a copied cookie stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address

from fastapi import HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from alerts import users
from alerts.config import Settings, get_settings
from alerts.db import utcnow
from alerts.i18n import N_
from alerts.models import User

CSRF_COOKIE = "alerts_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "alerts_session"
# Between the password and the TOTP code (or enrolment): who passed the first step.
PENDING_COOKIE = "alerts_2fa_pending"
PENDING_SIGN_IN = timedelta(minutes=10)
SESSION_SECRET_BYTES = 32
CSRF_VALUE_BYTES = 32
# Probes (Docker, Kubernetes) call these with whatever Host they like; they
# answer the same for everybody and redirect nowhere.
HOST_CHECK_EXEMPT = frozenset({"/healthz", "/readyz"})
UNKNOWN_CLIENT = "unknown"
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


# --- the client ------------------------------------------------------------------


def _parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def _trusted(address: str, settings: Settings) -> bool:
    parsed = _parse_ip(address)
    return parsed is not None and any(parsed in net for net in settings.trusted_proxy_networks)


def client_address(request: Request) -> str:
    """The address the request came from: the one place rate limits take it from.

    ``X-Forwarded-For`` counts only when the peer is a trusted proxy; then the
    right-most entry that is not one of our proxies is the client (entries to
    its left were written by the client itself and prove nothing).
    """
    peer = request.client.host if request.client else UNKNOWN_CLIENT
    settings = get_settings()
    if not settings.trusted_proxies.strip() or not _trusted(peer, settings):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, settings):
            parsed = _parse_ip(hop)
            return str(parsed) if parsed is not None else UNKNOWN_CLIENT
    return peer


def request_is_https(request: Request) -> bool:
    """Whether the browser spoke HTTPS: the socket's scheme, or a trusted proxy's word."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    settings = get_settings()
    if settings.trusted_proxies.strip() and _trusted(peer, settings):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        return proto == "https"
    return False


def host_allowed(host_header: str, settings: Settings) -> bool:
    """Whether the Host header names this site (its port is not part of the check)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    allowed = settings.allowed_hosts
    return bool(name) and ("*" in allowed or name in allowed)


# --- CSRF --------------------------------------------------------------------------


def _mac(purpose: str, value: str) -> str:
    secret = get_settings().resolved_secret_key
    return hmac.new(f"{purpose}:{secret}".encode(), value.encode(), hashlib.sha256).hexdigest()


def new_csrf_cookie() -> str:
    """A random value with the server's signature: only values we made are accepted."""
    value = secrets.token_urlsafe(CSRF_VALUE_BYTES)
    return f"{value}.{_mac('csrf-cookie', value)}"


def _csrf_cookie_valid(cookie: str | None) -> bool:
    if not cookie or len(cookie) > 200:
        return False
    value, _, signature = cookie.rpartition(".")
    return bool(value) and hmac.compare_digest(signature, _mac("csrf-cookie", value))


def _session_hash(request: Request) -> str:
    cookie = request.cookies.get(SESSION_COOKIE)
    return users.session_token_hash(cookie) if cookie else ""


def _expected_token(csrf_cookie: str, session_hash: str) -> str:
    return _mac("csrf-form", f"{csrf_cookie}|{session_hash}")


def csrf_token(request: Request) -> str:
    """The token to put in this page's forms (the cookie is set by the middleware)."""
    session_hash = getattr(request.state, "session_hash", None)
    if session_hash is None:
        session_hash = _session_hash(request)
    return _expected_token(request.state.csrf_cookie, session_hash)


async def require_csrf(request: Request) -> None:
    """Refuse a form post whose token does not match this browser's cookie and session."""
    cookie = request.cookies.get(CSRF_COOKIE)
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token")
    if cookie is None or not _csrf_cookie_valid(cookie) or not isinstance(sent, str):
        raise CsrfError
    if not hmac.compare_digest(_expected_token(cookie, _session_hash(request)), sent):
        raise CsrfError


def rotate_csrf(request: Request) -> None:
    """Give this browser a new CSRF cookie with the response (at sign-in and sign-out)."""
    request.state.csrf_cookie = new_csrf_cookie()
    request.state.csrf_rotated = True


# --- the middleware ----------------------------------------------------------------


async def security_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Refuse unknown hosts; give each browser a signed CSRF cookie and each
    response the security headers."""
    settings = get_settings()
    if request.url.path not in HOST_CHECK_EXEMPT and not host_allowed(
        request.headers.get("host", ""), settings
    ):
        return PlainTextResponse("Unknown host.", status_code=400)
    cookie = request.cookies.get(CSRF_COOKIE)
    valid = _csrf_cookie_valid(cookie)
    request.state.csrf_cookie = cookie if valid else new_csrf_cookie()
    request.state.csrf_rotated = not valid
    response = await call_next(request)
    if request.state.csrf_rotated:
        response.set_cookie(
            CSRF_COOKIE,
            request.state.csrf_cookie,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request),
        )
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def secure_cookies(request: Request) -> bool:
    """Cookies are ``Secure`` when the site is HTTPS, by configuration or by the request."""
    return get_settings().base_url.startswith("https://") or request_is_https(request)


# --- staff sessions ----------------------------------------------------------------


def start_session(
    request: Request, response: Response, session: Session, user: User, now: datetime
) -> None:
    """Sign ``user`` in on this browser: a new session row, cookie and CSRF token."""
    secret = secrets.token_urlsafe(SESSION_SECRET_BYTES)
    max_age = users.session_lifetime(get_settings())
    users.create_web_session(session, user, secret, now, now + max_age)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        httponly=True,
        samesite="lax",
        max_age=int(max_age.total_seconds()),
        secure=secure_cookies(request),
    )
    rotate_csrf(request)
    request.state.session_hash = users.session_token_hash(secret)


def end_session(request: Request, response: Response, session: Session, now: datetime) -> None:
    """Sign this browser out: the session row is revoked, not just the cookie dropped."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        users.revoke_web_session(session, cookie, now)
    response.delete_cookie(SESSION_COOKIE)
    rotate_csrf(request)
    request.state.session_hash = ""


def session_user(request: Request, session: Session) -> User | None:
    """The signed-in user, or None when the cookie is missing, unknown, revoked,
    expired, or the user is deactivated."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    return users.web_session_user(session, cookie, utcnow())


# --- the step between password and code -------------------------------------------------


def _pending_mac(user: User, issued: int) -> str:
    # The password's change time is part of it: a new password voids a half sign-in.
    return _mac("2fa-pending", f"{user.id}|{issued}|{user.password_changed_at.isoformat()}")


def start_pending_sign_in(request: Request, response: Response, user: User, now: datetime) -> None:
    """Remember, for a few minutes, that this browser gave ``user``'s password.

    No session exists yet: the cookie lets the browser reach only the code (or
    enrolment) step, and the session is made when that step succeeds.
    """
    issued = int(now.timestamp())
    response.set_cookie(
        PENDING_COOKIE,
        f"{user.id}.{issued}.{_pending_mac(user, issued)}",
        httponly=True,
        samesite="lax",
        max_age=int(PENDING_SIGN_IN.total_seconds()),
        secure=secure_cookies(request),
    )


def pending_sign_in_user(request: Request, session: Session, now: datetime) -> User | None:
    """The active user whose password this browser gave in the last few minutes, else None."""
    cookie = request.cookies.get(PENDING_COOKIE, "")
    parts = cookie.split(".") if len(cookie) <= 200 else []
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    user = session.get(User, int(parts[0]))
    issued = int(parts[1])
    if user is None or not user.active:
        return None
    if not hmac.compare_digest(parts[2], _pending_mac(user, issued)):
        return None
    if not 0 <= now.timestamp() - issued <= PENDING_SIGN_IN.total_seconds():
        return None
    return user


def end_pending_sign_in(response: Response) -> None:
    response.delete_cookie(PENDING_COOKIE)
