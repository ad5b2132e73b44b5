"""Pages for readers: sign-up, confirmation, the preference centre, unsubscribe.

Readers have no password: a signed link is their credential (purpose
``confirm``, ``preferences`` or ``unsubscribe``). Every state change is a
POST with a CSRF token, except one-click unsubscribe (RFC 8058), so a mail
scanner that prefetches links changes nothing. Errors on these pages come
back as pages (see ``PageRoute``), never as bare JSON.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Coroutine, Mapping
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.outbound import CONFIRM_PURPOSE as CONFIRM_LINK_PURPOSE
from alerts.delivery.outbound import PREFERENCES_PURPOSE, UNSUBSCRIBE_PURPOSE
from alerts.i18n import N_
from alerts.models import Frequency, Subscriber
from alerts.signup import (
    LANGUAGES,
    ConfirmOutcome,
    RateLimitedError,
    SettingsForm,
    SignupForm,
    add_interest,
    check_query,
    confirm,
    count_form_helper_call,
    edit_interest,
    erase,
    export_data,
    preview,
    region_input_value,
    remove_interest,
    set_paused,
    sign_up,
    suggest_regions,
    update_settings,
)
from alerts.subscribers import DEFAULT_SEND_AT, SubscriberError, unsubscribe
from alerts.tokens import ExpiredToken, InvalidToken, sign_token, verify_token
from alerts.web.security import require_csrf
from alerts.web.templating import templates

# Region inputs offered per interest form (the datalist helps fill them).
REGION_FIELDS = 3
RETRY_AFTER_SECONDS = 3600
# Zones that zoneinfo knows but nobody picks from a list.
HIDDEN_ZONE_PREFIXES = ("posix/", "right/", "Etc/", "SystemV/", "US/", "Canada/")
HIDDEN_ZONES = frozenset({"Factory", "localtime", "posixrules"})
# Only these notices are shown after a redirect; the query parameter is never echoed.
SAVED_NOTICES = {
    "settings": N_("Your delivery settings are saved."),
    "interest-added": N_("The interest is added."),
    "interest-saved": N_("The interest is saved."),
    "interest-removed": N_("The interest is removed."),
    "paused": N_("Delivery is paused. Nothing but newsletters will reach you until you resume."),
    "resumed": N_("Delivery is resumed."),
    "unsubscribed": N_("You are unsubscribed. No more mail will be sent to you."),
}
EXPORT_FILENAME = "my-alerts-data.json"


class PageRoute(APIRoute):
    """Routes whose errors (bad links, CSRF, limits) render ``error.html``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def render_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as error:
                return error_page(request, error.status_code, str(error.detail), error.headers)

        return render_errors


router = APIRouter(route_class=PageRoute)


def error_page(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message},
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def subscriber_from(token: str, purpose: str) -> int:
    """The subscriber a signed link names; a clear 400 page when it is not valid."""
    try:
        subject = verify_token(get_settings().resolved_secret_key, purpose, token, now=utcnow())
    except ExpiredToken as error:
        raise HTTPException(
            status_code=400,
            detail=N_(
                "This link has expired: sign up again and we will send you a fresh one."
            ),
        ) from error
    except InvalidToken as error:
        raise HTTPException(
            status_code=400,
            detail=N_(
                "This link is not valid. Your mail program may have cut it short: copy "
                "the whole address from the mail, or sign up again."
            ),
        ) from error
    return int(subject)


def preferences_path(subscriber_id: int) -> str:
    token = sign_token(get_settings().resolved_secret_key, PREFERENCES_PURPOSE, subscriber_id)
    return f"/preferences/{token}"


def client_address(request: Request) -> str:
    """The peer's address (uvicorn's proxy headers support sets it behind a proxy)."""
    return request.client.host if request.client else "unknown"


@lru_cache(maxsize=1)
def timezones() -> list[str]:
    names = {
        name
        for name in zoneinfo.available_timezones()
        if not name.startswith(HIDDEN_ZONE_PREFIXES) and name not in HIDDEN_ZONES and "/" in name
    }
    return ["UTC", *sorted(names)]


def _choices() -> dict[str, Any]:
    return {
        "timezones": timezones(),
        "languages": LANGUAGES,
        "frequencies": [f.value for f in Frequency],
        "region_fields": REGION_FIELDS,
    }


def _text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default


def _regions(form: FormData) -> list[str]:
    return [v.strip() for v in form.getlist("region") if isinstance(v, str) and v.strip()]


# --- sign-up ----------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def signup_page(request: Request) -> Any:
    form = SignupForm(email="", send_at=DEFAULT_SEND_AT.strftime("%H:%M"))
    return templates.TemplateResponse(
        request, "signup.html", {"form": form, "error": None, **_choices()}
    )


@router.post("/signup", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
async def signup_submit(request: Request) -> Any:
    """Same answer for every valid address, known or not: a redirect to the thanks page."""
    data = await request.form()
    form = SignupForm(
        email=_text(data, "email"),
        query=_text(data, "query"),
        regions=_regions(data),
        frequency=_text(data, "frequency", Frequency.DAILY.value),
        timezone=_text(data, "timezone", "UTC") or "UTC",
        send_at=_text(data, "send_at") or DEFAULT_SEND_AT.strftime("%H:%M"),
        language=_text(data, "language", "en"),
    )
    settings = get_settings()
    try:
        with get_database().session_scope() as session:
            sign_up(session, form, client_address(request), settings, utcnow())
    except SubscriberError as error:
        return templates.TemplateResponse(
            request,
            "signup.html",
            {"form": form, "error": str(error), **_choices()},
            status_code=400,
        )
    except RateLimitedError as error:
        raise HTTPException(
            status_code=429,
            detail=N_(
                "Too many sign-up attempts from your network or for this address. "
                "Please try again in an hour."
            ),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from error
    return RedirectResponse("/signup/thanks", status_code=303)


@router.get("/signup/thanks", response_class=HTMLResponse)
def signup_done(request: Request) -> Any:
    return templates.TemplateResponse(
        request, "signup_done.html", {"valid_hours": get_settings().confirmation_valid_hours}
    )


# The form helpers answer anyone, so each is rate-limited per client; past the
# limit the answer says why in the JSON the form reads.
FORM_HELPER_RETRY_SECONDS = 60


def _over_limit(helper: str) -> JSONResponse:
    return JSONResponse(
        {
            "ok": False,
            "limited": True,
            "message": f"Too many {helper} requests from your network: wait a minute and "
            "try again.",
            "articles": [],
        },
        status_code=429,
        headers={"Retry-After": str(FORM_HELPER_RETRY_SECONDS)},
    )


@router.get("/api/query-check", response_model=None)
def query_check(request: Request, q: str = "") -> dict[str, Any] | JSONResponse:
    """Validation as you type: ok, or the parser's message and character position."""
    settings = get_settings()
    if q.strip():
        try:
            with get_database().session_scope() as session:
                count_form_helper_call(
                    session, "query-check", client_address(request), settings, utcnow()
                )
        except RateLimitedError:
            return _over_limit("query check")
    result = check_query(q, settings)
    return {"ok": result.ok, "message": result.message, "position": result.position}


@router.get("/api/regions")
def region_suggestions(q: str = "") -> list[dict[str, str]]:
    return [
        {
            "id": s.id,
            "name": s.name,
            "kind": s.kind,
            "within": s.within,
            "value": s.value,
        }
        for s in suggest_regions(q)
    ]


@router.get("/api/preview", response_model=None)
def interest_preview(request: Request, q: str = "") -> dict[str, Any] | JSONResponse:
    """Recent articles the interest would have matched (titles only).

    Rate-limited per client and bounded in the articles it reads
    (``ALERTS_PREVIEW_PER_MINUTE``, ``ALERTS_PREVIEW_MAX_ARTICLES``): each call
    analyses stored articles, which must not let anyone keep the server busy.
    """
    regions = [r for r in request.query_params.getlist("region") if r.strip()]
    if not q.strip() and not regions:
        return {"ok": True, "articles": []}
    settings = get_settings()
    try:
        with get_database().session_scope() as session:
            count_form_helper_call(session, "preview", client_address(request), settings, utcnow())
    except RateLimitedError:
        return _over_limit("preview")
    try:
        with get_database().session_scope() as session:
            hits = preview(session, q, regions, settings, utcnow())
    except SubscriberError as error:
        return {"ok": False, "message": str(error), "articles": []}
    return {
        "ok": True,
        "articles": [
            {
                "title": hit.title,
                "published": hit.published.strftime("%d %b %Y") if hit.published else "",
            }
            for hit in hits
        ],
    }


# --- confirmation -------------------------------------------------------------


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> Any:
    """A page with a button: mail scanners that prefetch the link confirm nothing."""
    subscriber_from(token, CONFIRM_LINK_PURPOSE)
    return templates.TemplateResponse(request, "confirm.html", {"token": token, "outcome": None})


@router.post("/confirm/{token}", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def confirm_now(request: Request, token: str) -> Any:
    subscriber_id = subscriber_from(token, CONFIRM_LINK_PURPOSE)
    with get_database().session_scope() as session:
        outcome = confirm(session, subscriber_id, utcnow())
    return templates.TemplateResponse(
        request,
        "confirm.html",
        {
            "token": token,
            "outcome": outcome.value,
            "preferences_url": preferences_path(subscriber_id)
            if outcome in (ConfirmOutcome.CONFIRMED, ConfirmOutcome.ALREADY)
            else None,
        },
    )


# --- the preference centre ---------------------------------------------------


def _load(session: Session, token: str) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_from(token, PREFERENCES_PURPOSE))
    if subscriber is None:
        raise HTTPException(
            status_code=404,
            detail=N_(
                "This subscription no longer exists: its data was deleted. "
                "You can sign up again at any time."
            ),
        )
    return subscriber


def _interest_rows(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [
        {
            "id": interest.id,
            "query": interest.query or "",
            "regions": [region_input_value(r) for r in interest.regions or []],
        }
        for interest in sorted(subscriber.interests, key=lambda i: i.id)
    ]


def _centre(
    request: Request,
    token: str,
    subscriber: Subscriber,
    *,
    error: tuple[str, str] | None = None,
    typed: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """The centre page; ``error`` is (which form, message), ``typed`` what was sent."""
    saved = request.query_params.get("saved", "")
    context = {
        "token": token,
        "subscriber": subscriber,
        "interests": _interest_rows(subscriber),
        "notice": SAVED_NOTICES.get(saved),
        "error_for": error[0] if error else None,
        "error": error[1] if error else None,
        "typed": typed or {},
        **_choices(),
    }
    return templates.TemplateResponse(request, "preferences.html", context, status_code=status_code)


def _saved(token: str, what: str) -> RedirectResponse:
    return RedirectResponse(f"/preferences/{token}?saved={what}", status_code=303)


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences(request: Request, token: str) -> Any:
    with get_database().session_scope() as session:
        subscriber = _load(session, token)
        return _centre(request, token, subscriber)


@router.post(
    "/preferences/{token}/settings",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
async def preferences_settings(request: Request, token: str) -> Any:
    data = await request.form()
    form = SettingsForm(
        frequency=_text(data, "frequency"),
        timezone=_text(data, "timezone"),
        send_at=_text(data, "send_at"),
        language=_text(data, "language"),
        quiet_start=_text(data, "quiet_start"),
        quiet_end=_text(data, "quiet_end"),
    )
    with get_database().session_scope() as session:
        subscriber = _load(session, token)
        try:
            update_settings(subscriber, form)
        except SubscriberError as error:
            session.rollback()
            return _centre(
                request,
                token,
                _load(session, token),
                error=("settings", str(error)),
                status_code=400,
            )
    return _saved(token, "settings")


@router.post(
    "/preferences/{token}/interests",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
async def preferences_add_interest(request: Request, token: str) -> Any:
    data = await request.form()
    query, regions = _text(data, "query"), _regions(data)
    with get_database().session_scope() as session:
        subscriber = _load(session, token)
        try:
            add_interest(session, subscriber, query, regions, get_settings(), utcnow())
        except SubscriberError as error:
            session.rollback()
            return _centre(
                request,
                token,
                _load(session, token),
                error=("new", str(error)),
                typed={"query": query, "regions": regions},
                status_code=400,
            )
    return _saved(token, "interest-added")


@router.post(
    "/preferences/{token}/interests/{interest_id}",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
async def preferences_edit_interest(request: Request, token: str, interest_id: int) -> Any:
    data = await request.form()
    query, regions = _text(data, "query"), _regions(data)
    with get_database().session_scope() as session:
        subscriber = _load(session, token)
        try:
            edit_interest(
                session, subscriber, interest_id, query, regions, get_settings(), utcnow()
            )
        except SubscriberError as error:
            session.rollback()
            return _centre(
                request,
                token,
                _load(session, token),
                error=(f"interest-{interest_id}", str(error)),
                typed={"query": query, "regions": regions},
                status_code=400,
            )
    return _saved(token, "interest-saved")


@router.post(
    "/preferences/{token}/interests/{interest_id}/delete",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_remove_interest(request: Request, token: str, interest_id: int) -> Any:
    with get_database().session_scope() as session:
        subscriber = _load(session, token)
        try:
            remove_interest(session, subscriber, interest_id)
        except SubscriberError as error:
            raise HTTPException(status_code=404, detail=str(error)) from error
    return _saved(token, "interest-removed")


@router.post(
    "/preferences/{token}/pause", response_class=HTMLResponse, dependencies=[Depends(require_csrf)]
)
def preferences_pause(token: str) -> Any:
    with get_database().session_scope() as session:
        set_paused(_load(session, token), paused=True)
    return _saved(token, "paused")


@router.post(
    "/preferences/{token}/resume",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_resume(token: str) -> Any:
    with get_database().session_scope() as session:
        set_paused(_load(session, token), paused=False)
    return _saved(token, "resumed")


@router.post(
    "/preferences/{token}/unsubscribe",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_unsubscribe(token: str) -> Any:
    with get_database().session_scope() as session:
        subscriber = _load(session, token)
        unsubscribe(session, subscriber.id, utcnow())
    return _saved(token, "unsubscribed")


@router.get("/preferences/{token}/export")
def preferences_export(token: str) -> Any:
    """The right of access: everything stored about the reader, as a JSON download."""
    with get_database().session_scope() as session:
        data = export_data(session, _load(session, token))
    return JSONResponse(
        data,
        headers={
            "Content-Disposition": f'attachment; filename="{EXPORT_FILENAME}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/preferences/{token}/erase", response_class=HTMLResponse)
def preferences_erase_page(request: Request, token: str) -> Any:
    """The confirmation step before erasure: nothing is deleted by a GET."""
    with get_database().session_scope() as session:
        _load(session, token)
    return templates.TemplateResponse(request, "erase.html", {"token": token, "done": False})


@router.post(
    "/preferences/{token}/erase",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_erase(request: Request, token: str) -> Any:
    with get_database().session_scope() as session:
        erase(session, _load(session, token).id, utcnow())
    return templates.TemplateResponse(request, "erase.html", {"token": token, "done": True})


# --- one-click unsubscribe -----------------------------------------------------


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
