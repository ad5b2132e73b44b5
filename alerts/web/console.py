"""What the admin console and the editors' desk share: who is signed in, roles, CSRF.

Both mount their routers with ``csrf_on_posts``, so a new form cannot forget
its token, and take the user from ``StaffDep``, ``AdminDep`` or ``EditorDep``:
a stranger is sent to the login page (and back afterwards), a signed-in user
without the role gets 403.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from alerts import two_factor
from alerts.config import get_settings
from alerts.models import Role, User
from alerts.web.dependencies import SessionDep
from alerts.web.security import require_csrf, session_user

LOGIN_PATH = "/admin/login"
ENROL_PATH = "/admin/account/2fa"
ADMIN_PATH = "/admin"
EDITOR_PATH = "/editor"
EDITOR_ROLES = frozenset({Role.EDITOR, Role.ADMIN})
# The preview is the reader's mail: its inline styles may apply, nothing may run,
# and it may be framed only by our own pages.
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)


async def csrf_on_posts(request: Request) -> None:
    """Every state-changing request of the console needs the form's CSRF token."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        await require_csrf(request)


class LoginRequired(HTTPException):
    """No valid session: send the browser to the login page, then back here."""

    def __init__(self, request: Request) -> None:
        target = request.url.path if request.method == "GET" else ADMIN_PATH
        super().__init__(
            status_code=303,
            detail="Sign in first.",
            headers={"Location": f"{LOGIN_PATH}?next={quote(target)}"},
        )


class EnrolmentRequired(HTTPException):
    """ALERTS_REQUIRE_2FA covers this user and they have not enrolled: nothing else first."""

    def __init__(self) -> None:
        super().__init__(
            status_code=303,
            detail="Set up two-factor sign-in first.",
            headers={"Location": ENROL_PATH},
        )


class AdminOnly(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=403, detail="This page is for admins only.")


class EditorsOnly(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=403, detail="This page is for editors.")


def signed_in_enrolling(request: Request, session: Session) -> User:
    """The signed-in user, even one who still has to set up two-factor sign-in."""
    user = session_user(request, session)
    if user is None:
        raise LoginRequired(request)
    return user


def signed_in(request: Request, session: Session) -> User:
    """The signed-in user; one who must enrol first is sent to enrolment (a session
    begun before ALERTS_REQUIRE_2FA was set, or after turning two-factor off)."""
    user = signed_in_enrolling(request, session)
    if two_factor.must_enrol(user, get_settings()):
        raise EnrolmentRequired
    return user


def admin_user(request: Request, session: Session) -> User:
    user = signed_in(request, session)
    if user.role is not Role.ADMIN:
        raise AdminOnly
    return user


def editor_user(request: Request, session: Session) -> User:
    user = signed_in(request, session)
    if user.role not in EDITOR_ROLES:
        raise EditorsOnly
    return user


def _staff(request: Request, session: SessionDep) -> User:
    return signed_in(request, session)


def _enrolling(request: Request, session: SessionDep) -> User:
    return signed_in_enrolling(request, session)


def _admin(request: Request, session: SessionDep) -> User:
    return admin_user(request, session)


def _editor(request: Request, session: SessionDep) -> User:
    return editor_user(request, session)


StaffDep = Annotated[User, Depends(_staff)]
# Only for the pages of two-factor enrolment itself.
EnrollingDep = Annotated[User, Depends(_enrolling)]
AdminDep = Annotated[User, Depends(_admin)]
EditorDep = Annotated[User, Depends(_editor)]


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def framed_mail(html: str) -> HTMLResponse:
    """A mail's HTML part for a sandboxed frame of our own pages (preview, outbox)."""
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": PREVIEW_POLICY,
            "X-Frame-Options": "SAMEORIGIN",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
