"""The admin console: sign-in, dashboard, subscribers, suppressions, users, audit.

Every POST here carries a CSRF token (checked for the whole router, so a new
form cannot forget it). A stranger is sent to the login page; an editor may
sign in, see their account, and is refused every admin-only page with 403.
Each admin action writes an audit entry in the same transaction as the change.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from alerts import admin, audit, bounces, two_factor, users, webhooks
from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.models import ApiToken, Frequency, Role, Subscriber, SubscriberStatus, Suppression, User
from alerts.subscribers import (
    ImportStoppedError,
    SubscriberError,
    erase,
    import_csv_in_batches,
)
from alerts.web.console import (
    ADMIN_PATH,
    EDITOR_PATH,
    ENROL_PATH,
    LOGIN_PATH,
    AdminDep,
    EnrollingDep,
    StaffDep,
    csrf_on_posts,
    see_other,
)
from alerts.web.dependencies import SessionDep
from alerts.web.security import (
    client_address,
    end_pending_sign_in,
    end_session,
    pending_sign_in_user,
    start_pending_sign_in,
    start_session,
)
from alerts.web.templating import templates

HOME_PATH = ADMIN_PATH
CODE_PATH = "/admin/login/code"
LOGIN_ENROL_PATH = "/admin/login/enrol"
MAX_IMPORT_BYTES = 10 * 1024 * 1024
WRONG_LOGIN = "That e-mail address and password do not match an account."
TOO_MANY_LOGINS = "Too many failed sign-ins. Wait a few minutes and try again."
# Fixed texts chosen by a code in the redirect URL: nothing typed is echoed back.
NOTICES = {
    "saved": "Changes saved.",
    "suspended": "Subscriber suspended: no mail goes out to them.",
    "unsuspended": "Suspension lifted.",
    "reactivated": "Reactivated: off the suppression list, bounce score cleared.",
    "erased": "Subscriber erased.",
    "suppressed": "Address added to the suppression list.",
    "unsuppressed": "Address removed from the suppression list.",
    "role": "Role changed.",
    "deactivated": "User deactivated; their sessions and tokens no longer work.",
    "activated": "User reactivated.",
    "password": "Password changed. Other sessions have been signed out.",
    "revoked": "Token revoked.",
    "2fa_off": "Two-factor sign-in is off. Your authenticator app's entry no longer works.",
    "recovery": "You signed in with a recovery code; each works once. See below how many are left.",
    "expired": "The sign-in took too long. Give your password again.",
}

router = APIRouter(prefix="/admin", dependencies=[Depends(csrf_on_posts)], include_in_schema=False)


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return templates.TemplateResponse(
        request,
        f"admin/{name}",
        {"notice": notice, "roles": [r.value for r in Role], **context},
        status_code=status_code,
    )


def _safe_next(target: str) -> str:
    """Only a path inside the console or the editors' pages: never an open redirect."""
    inside = target.startswith((HOME_PATH, EDITOR_PATH))
    if inside and not target.startswith("//") and "\\" not in target:
        return target
    return HOME_PATH


# --- sign-in ---------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = HOME_PATH) -> Any:
    return render(request, "login.html", {"next": _safe_next(next), "error": None, "email": ""})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = HOME_PATH,
) -> Any:
    now = utcnow()
    client = client_address(request)
    context = {"next": _safe_next(next), "email": email}
    if users.login_throttled(session, email, client, now):
        return render(request, "login.html", {**context, "error": TOO_MANY_LOGINS}, 429)
    user = users.authenticate(session, email, password)
    if user is None:
        users.record_login_failure(session, email, client, now)
        return render(request, "login.html", {**context, "error": WRONG_LOGIN}, 401)
    users.clear_login_failures(session, email, client)
    settings = get_settings()
    target = _safe_next(next)
    if two_factor.enrolled(user) or two_factor.must_enrol(user, settings):
        # No session yet: the browser may only give the code (or enrol) next.
        step = CODE_PATH if two_factor.enrolled(user) else LOGIN_ENROL_PATH
        response = see_other(f"{step}?next={quote(target)}")
        start_pending_sign_in(request, response, user, now)
        return response
    response = see_other(target)
    # A new session row, cookie and CSRF cookie: tokens of the page before are dead.
    start_session(request, response, session, user, now)
    return response


def _pending_user(request: Request, session: Session) -> User:
    """Who gave their password on this browser a few minutes ago; else back to the start."""
    user = pending_sign_in_user(request, session, utcnow())
    if user is None:
        raise HTTPException(
            status_code=303,
            detail="Sign in first.",
            headers={"Location": f"{LOGIN_PATH}?notice=expired"},
        )
    return user


def _finish_sign_in(request: Request, response: Response, session: Session, user: User) -> Response:
    end_pending_sign_in(response)
    start_session(request, response, session, user, utcnow())
    return response


def _code_page(
    request: Request, next: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return render(
        request, "login_code.html", {"next": _safe_next(next), "error": error}, status_code
    )


@router.get(f"{CODE_PATH.removeprefix('/admin')}", response_class=HTMLResponse)
def code_page(request: Request, session: SessionDep, next: str = HOME_PATH) -> Any:
    user = _pending_user(request, session)
    if not two_factor.enrolled(user):
        return see_other(f"{LOGIN_ENROL_PATH}?next={quote(_safe_next(next))}")
    return _code_page(request, next)


@router.post(f"{CODE_PATH.removeprefix('/admin')}", response_class=HTMLResponse)
def submit_code(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = HOME_PATH,
) -> Any:
    user = _pending_user(request, session)
    try:
        kind = two_factor.verify_sign_in(
            session, user, code, get_settings(), client_address(request), utcnow()
        )
    except two_factor.TooManyCodesError as error:
        return _code_page(request, next, str(error), 429)
    except two_factor.CodeRefusedError as error:
        return _code_page(request, next, str(error), 401)
    except two_factor.TwoFactorError as error:
        return _code_page(request, next, str(error), 409)
    target = "/admin/account?notice=recovery" if kind == "recovery" else _safe_next(next)
    return _finish_sign_in(request, see_other(target), session, user)


def _enrol_page(
    request: Request,
    session: Session,
    user: User,
    action: str,
    next: str,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    enrolment = two_factor.begin_enrolment(session, user, get_settings())
    context = {
        "user": user if action == ENROL_PATH else None,
        "enrolment": enrolment,
        # segno's own markup: the URI is only in the path data, the title is ours.
        "qr_code": Markup(enrolment.qr_svg()),  # noqa: S704 - generated here, no input as markup
        "action": action,
        "next": _safe_next(next),
        "required": two_factor.required_for(user, get_settings()),
        "error": error,
    }
    return render(request, "two_factor_enrol.html", context, status_code)


def _confirm(
    request: Request, session: Session, user: User, code: str, action: str, next: str
) -> list[str] | HTMLResponse:
    """The recovery codes, or the enrolment page again with the reason."""
    try:
        return two_factor.confirm_enrolment(session, user, user, code, get_settings(), utcnow())
    except two_factor.TwoFactorError as error:
        return _enrol_page(request, session, user, action, next, str(error), 422)


def _recovery_codes_page(
    request: Request, user: User | None, codes: list[str], next: str, *, replaced: bool = False
) -> HTMLResponse:
    context = {"user": user, "codes": codes, "next": _safe_next(next), "replaced": replaced}
    return render(request, "recovery_codes.html", context)


@router.get(f"{LOGIN_ENROL_PATH.removeprefix('/admin')}", response_class=HTMLResponse)
def login_enrol_page(request: Request, session: SessionDep, next: str = HOME_PATH) -> Any:
    user = _pending_user(request, session)
    if two_factor.enrolled(user):
        return see_other(f"{CODE_PATH}?next={quote(_safe_next(next))}")
    return _enrol_page(request, session, user, LOGIN_ENROL_PATH, next)


@router.post(f"{LOGIN_ENROL_PATH.removeprefix('/admin')}", response_class=HTMLResponse)
def login_enrol(
    request: Request,
    session: SessionDep,
    code: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = HOME_PATH,
) -> Any:
    user = _pending_user(request, session)
    if two_factor.enrolled(user):
        return see_other(f"{CODE_PATH}?next={quote(_safe_next(next))}")
    codes = _confirm(request, session, user, code, LOGIN_ENROL_PATH, next)
    if isinstance(codes, HTMLResponse):
        return codes
    # Password and code given: this is where the session begins. The page has no
    # form (its CSRF tokens would belong to the state before the new session).
    response = _recovery_codes_page(request, None, codes, next)
    return _finish_sign_in(request, response, session, user)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Any:
    response = see_other(LOGIN_PATH)
    end_session(request, response, session, utcnow())
    end_pending_sign_in(response)
    return response


# --- dashboard -------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep, user: StaffDep) -> Any:
    figures = (
        admin.dashboard(session, get_settings(), utcnow()) if user.role is Role.ADMIN else None
    )
    return render(request, "dashboard.html", {"user": user, "dashboard": figures})


# --- subscribers -----------------------------------------------------------------


def _enum_or_none(kind: type[SubscriberStatus] | type[Frequency], value: str) -> Any:
    try:
        return kind(value) if value else None
    except ValueError:
        return None


@router.get("/subscribers", response_class=HTMLResponse)
def subscribers(
    request: Request,
    session: SessionDep,
    user: AdminDep,
    q: str = "",
    status: str = "",
    frequency: str = "",
    page: int = 1,
) -> Any:
    wanted = admin.SubscriberFilter(
        email=q,
        status=_enum_or_none(SubscriberStatus, status),
        frequency=_enum_or_none(Frequency, frequency),
    )
    found = admin.search_subscribers(session, wanted, page)
    return render(
        request,
        "subscribers.html",
        {
            "user": user,
            "found": found,
            "q": q,
            "status": status,
            "frequency": frequency,
            "statuses": [s.value for s in SubscriberStatus],
            "frequencies": [f.value for f in Frequency],
        },
    )


@router.get("/subscribers/export.csv")
def export_subscribers(request: Request, session: SessionDep, user: AdminDep) -> Any:
    text = admin.export_csv(session, user)
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="subscribers-{stamp}.csv"'},
    )


@router.get("/subscribers/import", response_class=HTMLResponse)
def import_page(request: Request, session: SessionDep, user: AdminDep) -> Any:
    return render(request, "import.html", {"user": user, "report": None, "error": None})


@router.post("/subscribers/import", response_class=HTMLResponse)
def import_subscribers(
    request: Request, session: SessionDep, user: AdminDep, file: UploadFile
) -> Any:
    """A plain ``def``: the import validates every row (query parser, gazetteer)."""
    data = file.file.read(MAX_IMPORT_BYTES + 1)
    text, error = "", None
    if len(data) > MAX_IMPORT_BYTES:
        error = f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB."
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            error = "The file is not UTF-8 text. Save it as CSV (UTF-8) and try again."
    if error:
        return render(request, "import.html", {"user": user, "report": None, "error": error}, 400)
    # The import commits batch by batch in transactions of its own, so the clock
    # and the workers can write between batches. The request's transaction (the
    # sign-in check) ends first: left open it would hold SQLite's write lock
    # (BEGIN IMMEDIATE) and stall the first batch.
    session.commit()
    try:
        report = import_csv_in_batches(get_database(), text, get_settings(), utcnow(), actor=user)
    except ImportStoppedError as stopped:
        report, error = stopped.report, f"{stopped}."
    context = {
        "user": user,
        "report": report,
        "error": error,
        "batch_rows": get_settings().import_batch_rows,
    }
    # a batch that failed is the database's trouble (locked, gone), not the file's
    return render(request, "import.html", context, 503 if error else 200)


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise HTTPException(status_code=404, detail="No such subscriber.")
    return subscriber


def _subscriber_page(
    request: Request,
    session: Session,
    user: User,
    subscriber: Subscriber,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings()
    return render(
        request,
        "subscriber.html",
        {
            "user": user,
            "subscriber": subscriber,
            "deliveries": admin.recent_deliveries(session, subscriber.id),
            "bounces": bounces.history(session, subscriber.id),
            "bounce_score": bounces.bounce_score(session, subscriber.email, settings, utcnow()),
            "bounce_threshold": settings.bounce_score_threshold,
            "bounce_window": settings.bounce_window_days,
            "frequencies": [f.value for f in Frequency],
            "error": error,
        },
        status_code,
    )


@router.get("/subscribers/{subscriber_id:int}", response_class=HTMLResponse)
def subscriber_page(
    request: Request, session: SessionDep, user: AdminDep, subscriber_id: int
) -> Any:
    return _subscriber_page(request, session, user, _subscriber(session, subscriber_id))


@router.post("/subscribers/{subscriber_id:int}", response_class=HTMLResponse)
def edit_subscriber(
    request: Request,
    session: SessionDep,
    user: AdminDep,
    subscriber_id: int,
    name: Annotated[str, Form()] = "",
    frequency: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    send_at: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    paused: Annotated[bool, Form()] = False,
) -> Any:
    changes = admin.SubscriberChanges(
        name=name,
        frequency=frequency or None,
        timezone=timezone or None,
        send_at=send_at or None,
        language=language or None,
        paused=paused,
    )
    subscriber = _subscriber(session, subscriber_id)
    try:
        admin.edit_subscriber(session, user, subscriber, changes)
    except SubscriberError as error:
        return _subscriber_page(request, session, user, subscriber, str(error), 422)
    return see_other(f"/admin/subscribers/{subscriber_id}?notice=saved")


@router.post("/subscribers/{subscriber_id:int}/suspend")
def suspend_subscriber(
    request: Request, session: SessionDep, user: AdminDep, subscriber_id: int
) -> Any:
    subscriber = _subscriber(session, subscriber_id)
    admin.suspend(session, user, subscriber)
    return see_other(f"/admin/subscribers/{subscriber_id}?notice=suspended")


@router.post("/subscribers/{subscriber_id:int}/unsuspend")
def unsuspend_subscriber(
    request: Request, session: SessionDep, user: AdminDep, subscriber_id: int
) -> Any:
    subscriber = _subscriber(session, subscriber_id)
    admin.unsuspend(session, user, subscriber)
    return see_other(f"/admin/subscribers/{subscriber_id}?notice=unsuspended")


@router.post("/subscribers/{subscriber_id:int}/reactivate")
def reactivate_subscriber(
    request: Request, session: SessionDep, user: AdminDep, subscriber_id: int
) -> Any:
    subscriber = _subscriber(session, subscriber_id)
    bounces.reactivate(session, user, subscriber)
    return see_other(f"/admin/subscribers/{subscriber_id}?notice=reactivated")


@router.get("/subscribers/{subscriber_id:int}/delete", response_class=HTMLResponse)
def delete_page(request: Request, session: SessionDep, user: AdminDep, subscriber_id: int) -> Any:
    subscriber = _subscriber(session, subscriber_id)
    return render(request, "subscriber_delete.html", {"user": user, "subscriber": subscriber})


@router.post("/subscribers/{subscriber_id:int}/delete")
def delete_subscriber(
    request: Request, session: SessionDep, user: AdminDep, subscriber_id: int
) -> Any:
    _subscriber(session, subscriber_id)
    erase(session, user, subscriber_id, utcnow())
    return see_other("/admin/subscribers?notice=erased")


# --- suppressions ----------------------------------------------------------------


def _suppressions_page(
    request: Request, session: Session, user: User, q: str, error: str | None, status_code: int
) -> HTMLResponse:
    return render(
        request,
        "suppressions.html",
        {
            "user": user,
            "q": q,
            "suppressions": admin.list_suppressions(session, q),
            "error": error,
        },
        status_code,
    )


@router.get("/suppressions", response_class=HTMLResponse)
def suppressions(request: Request, session: SessionDep, user: AdminDep, q: str = "") -> Any:
    return _suppressions_page(request, session, user, q, None, 200)


@router.post("/suppressions", response_class=HTMLResponse)
def add_suppression(
    request: Request,
    session: SessionDep,
    user: AdminDep,
    email: Annotated[str, Form()] = "",
    detail: Annotated[str, Form()] = "",
) -> Any:
    try:
        admin.add_suppression(session, user, email, detail, utcnow())
    except SubscriberError as error:
        return _suppressions_page(request, session, user, "", str(error), 422)
    return see_other("/admin/suppressions?notice=suppressed")


@router.post("/suppressions/{suppression_id:int}/delete")
def remove_suppression(
    request: Request, session: SessionDep, user: AdminDep, suppression_id: int
) -> Any:
    suppression = session.get(Suppression, suppression_id)
    if suppression is None:
        raise HTTPException(status_code=404, detail="No such suppression.")
    admin.remove_suppression(session, user, suppression)
    return see_other("/admin/suppressions?notice=unsuppressed")


# --- webhooks --------------------------------------------------------------------


def _webhooks_page(
    request: Request, session: Session, user: User, error: str | None, status_code: int
) -> HTMLResponse:
    context = {
        "user": user,
        "endpoints": webhooks.overview(session),
        "events": sorted(webhooks.EVENTS),
    }
    return render(request, "webhooks.html", {**context, "error": error}, status_code)


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, session: SessionDep, user: AdminDep) -> Any:
    return _webhooks_page(request, session, user, None, 200)


@router.post("/webhooks", response_class=HTMLResponse)
def add_webhook(
    request: Request,
    session: SessionDep,
    user: AdminDep,
    url: Annotated[str, Form()] = "",
    event: Annotated[list[str] | None, Form()] = None,
) -> Any:
    url, events = url.strip(), event or []
    try:
        endpoint = webhooks.add_endpoint(session, user, url, events, utcnow())
    except webhooks.WebhookError as error:
        return _webhooks_page(request, session, user, str(error), 422)
    return render(
        request,
        "secret.html",
        {
            "user": user,
            "title": "New webhook",
            "what": "The signing secret of this endpoint",
            "secret": endpoint.secret,
            "back": "/admin/webhooks",
        },
    )


@router.post("/webhooks/{endpoint_id:int}/deactivate")
def deactivate_webhook(
    request: Request, session: SessionDep, user: AdminDep, endpoint_id: int
) -> Any:
    if not webhooks.deactivate(session, user, endpoint_id):
        raise HTTPException(status_code=404, detail="No such webhook.")
    return see_other("/admin/webhooks?notice=saved")


# --- users -----------------------------------------------------------------------


def _users_page(
    request: Request, session: Session, user: User, error: str | None, status_code: int
) -> HTMLResponse:
    return render(
        request,
        "users.html",
        {"user": user, "users": users.list_users(session), "error": error},
        status_code,
    )


def _other_user(session: Session, actor: User, user_id: int) -> User:
    """The user to change; an admin may not demote or lock out themselves here."""
    target = session.get(User, user_id)
    if target is None:
        raise HTTPException(status_code=404, detail="No such user.")
    if target.id == actor.id:
        raise HTTPException(
            status_code=409, detail="Ask another admin to change your own role or access."
        )
    return target


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, session: SessionDep, user: AdminDep) -> Any:
    return _users_page(request, session, user, None, 200)


@router.post("/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    session: SessionDep,
    actor: AdminDep,
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = Role.EDITOR.value,
    password: Annotated[str, Form()] = "",
) -> Any:
    secret = password or users.generate_password()
    try:
        created = users.create_user(session, actor, email, secret, users.parse_role(role), utcnow())
    except users.UserError as error:
        return _users_page(request, session, actor, str(error), 422)
    if password:
        return see_other("/admin/users?notice=saved")
    return render(
        request,
        "secret.html",
        {
            "user": actor,
            "title": "New user",
            "what": f"The password of {created.email}",
            "secret": secret,
            "back": "/admin/users",
        },
    )


@router.post("/users/{user_id:int}/role")
def change_role(
    request: Request,
    session: SessionDep,
    actor: AdminDep,
    user_id: int,
    role: Annotated[str, Form()] = "",
) -> Any:
    target = _other_user(session, actor, user_id)
    try:
        new_role = users.parse_role(role)
    except users.UserError as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
    # The target's open sessions end: they sign in again under the new role.
    users.set_role(session, actor, target, new_role, utcnow())
    return see_other("/admin/users?notice=role")


@router.post("/users/{user_id:int}/deactivate")
def deactivate_user(request: Request, session: SessionDep, actor: AdminDep, user_id: int) -> Any:
    target = _other_user(session, actor, user_id)
    users.set_active(session, actor, target, False, utcnow())
    return see_other("/admin/users?notice=deactivated")


@router.post("/users/{user_id:int}/activate")
def activate_user(request: Request, session: SessionDep, actor: AdminDep, user_id: int) -> Any:
    target = _other_user(session, actor, user_id)
    users.set_active(session, actor, target, True, utcnow())
    return see_other("/admin/users?notice=activated")


@router.post("/users/{user_id:int}/reset-password", response_class=HTMLResponse)
def reset_password(request: Request, session: SessionDep, actor: AdminDep, user_id: int) -> Any:
    target = _other_user(session, actor, user_id)
    secret = users.generate_password()
    users.change_password(session, actor, target, secret, utcnow())
    return render(
        request,
        "secret.html",
        {
            "user": actor,
            "title": "Password reset",
            "what": f"The new password of {target.email}",
            "secret": secret,
            "back": "/admin/users",
        },
    )


# --- audit -----------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: SessionDep, user: AdminDep, page: int = 1) -> Any:
    return render(request, "audit.html", {"user": user, "log": audit.recent(session, page)})


# --- own account and API tokens ----------------------------------------------------


def _account_page(
    request: Request, session: Session, user: User, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "account.html",
        {
            "user": user,
            "tokens": users.tokens_of(session, user),
            "error": error,
            "min_password": users.MIN_PASSWORD_LENGTH,
            "two_factor_on": two_factor.enrolled(user),
            "two_factor_required": two_factor.required_for(user, get_settings()),
            "recovery_codes_left": two_factor.recovery_codes_left(session, user),
        },
        status_code,
    )


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, session: SessionDep, user: StaffDep) -> Any:
    return _account_page(request, session, user)


@router.post("/account/password", response_class=HTMLResponse)
def change_own_password(
    request: Request,
    session: SessionDep,
    user: StaffDep,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
    repeat: Annotated[str, Form()] = "",
) -> Any:
    now = utcnow()
    error = None
    if not users.verify_password(user, current):
        error = "The current password is not right."
    elif new != repeat:
        error = "The two new passwords differ."
    else:
        try:
            users.change_password(session, user, user, new, now)
        except users.UserError as problem:
            error = str(problem)
    if error:
        return _account_page(request, session, user, error, 422)
    response = see_other("/admin/account?notice=password")
    # Every session of the user was revoked; this browser gets a fresh one.
    start_session(request, response, session, user, now)
    return response


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(
    request: Request, session: SessionDep, user: StaffDep, name: Annotated[str, Form()] = ""
) -> Any:
    try:
        new = users.create_api_token(session, user, user, name, utcnow())
    except users.UserError as error:
        return _account_page(request, session, user, str(error), 422)
    return render(
        request,
        "secret.html",
        {
            "user": user,
            "title": "New API token",
            "what": f"The API token “{new.token.name}”",
            "secret": new.secret,
            "back": "/admin/account",
        },
    )


@router.post("/account/tokens/{token_id:int}/revoke")
def revoke_token(request: Request, session: SessionDep, user: StaffDep, token_id: int) -> Any:
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise HTTPException(status_code=404, detail="No such token.")
    users.revoke_api_token(session, user, token, utcnow())
    return see_other("/admin/account?notice=revoked")


# --- own two-factor sign-in ------------------------------------------------------------


@router.get(ENROL_PATH.removeprefix("/admin"), response_class=HTMLResponse)
def enrol_page(request: Request, session: SessionDep, user: EnrollingDep) -> Any:
    if two_factor.enrolled(user):
        return see_other("/admin/account")
    return _enrol_page(request, session, user, ENROL_PATH, "/admin/account")


@router.post(ENROL_PATH.removeprefix("/admin"), response_class=HTMLResponse)
def enrol(
    request: Request, session: SessionDep, user: EnrollingDep, code: Annotated[str, Form()] = ""
) -> Any:
    if two_factor.enrolled(user):
        return see_other("/admin/account")
    codes = _confirm(request, session, user, code, ENROL_PATH, "/admin/account")
    if isinstance(codes, HTMLResponse):
        return codes
    return _recovery_codes_page(request, user, codes, "/admin/account")


@router.post(f"{ENROL_PATH.removeprefix('/admin')}/disable", response_class=HTMLResponse)
def disable_two_factor(
    request: Request,
    session: SessionDep,
    user: StaffDep,
    password: Annotated[str, Form()] = "",
) -> Any:
    try:
        two_factor.disable(session, user, password, utcnow())
    except two_factor.TwoFactorError as error:
        return _account_page(request, session, user, str(error), 422)
    return see_other("/admin/account?notice=2fa_off")


@router.post(f"{ENROL_PATH.removeprefix('/admin')}/recovery-codes", response_class=HTMLResponse)
def new_recovery_codes(
    request: Request,
    session: SessionDep,
    user: StaffDep,
    password: Annotated[str, Form()] = "",
) -> Any:
    try:
        codes = two_factor.replace_recovery_codes(session, user, password, get_settings(), utcnow())
    except two_factor.TwoFactorError as error:
        return _account_page(request, session, user, str(error), 422)
    return _recovery_codes_page(request, user, codes, "/admin/account", replaced=True)
