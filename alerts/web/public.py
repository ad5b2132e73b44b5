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
from datetime import timedelta
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from alerts.config import get_settings
from alerts.db import utcnow
from alerts.i18n import N_
from alerts.links import CONFIRM_PURPOSE as CONFIRM_LINK_PURPOSE
from alerts.links import PREFERENCES_PURPOSE, UNSUBSCRIBE_PURPOSE
from alerts.models import Frequency, Subscriber, SubscriberStatus
from alerts.signup import (
    LANGUAGES,
    ConfirmOutcome,
    RateLimitedError,
    SettingsForm,
    SignupForm,
    add_interest,
    check_preference_writes,
    check_query,
    confirm,
    count_form_helper_call,
    edit_interest,
    erase,
    export_data,
    parse_confirm_subject,
    preview,
    region_input_value,
    remove_interest,
    set_paused,
    sign_out_links,
    sign_up,
    suggest_regions,
    update_settings,
)
from alerts.subscribers import DEFAULT_SEND_AT, SubscriberError, unsubscribe
from alerts.tokens import (
    ExpiredToken,
    InvalidToken,
    parse_reader_subject,
    reader_subject,
    sign_token,
    verify_token,
)
from alerts.web.dependencies import FormDep, SessionDep, roll_back
from alerts.web.security import client_address, require_csrf
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
                # The page is an answer, so the session dependency sees no
                # exception: tell it the request's work is not to be kept.
                roll_back(request)
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


STALE_LINK = N_(
    "This link no longer works: links are replaced when you unsubscribe or sign out "
    "of all links. Use the link in the most recent mail from us."
)
PREFERENCE_WRITES_LIMITED = N_("Too many changes in a short time. Please try again in an hour.")


def verified_subject(token: str, purpose: str) -> str:
    """The subject a signed link names; a clear 400 page when it is not valid."""
    try:
        return verify_token(get_settings().resolved_secret_key, purpose, token, now=utcnow())
    except ExpiredToken as error:
        raise HTTPException(
            status_code=400,
            detail=N_("This link has expired: sign up again and we will send you a fresh one."),
        ) from error
    except InvalidToken as error:
        raise HTTPException(
            status_code=400,
            detail=N_(
                "This link is not valid. Your mail program may have cut it short: copy "
                "the whole address from the mail, or sign up again."
            ),
        ) from error


def _not_valid() -> HTTPException:
    return HTTPException(
        status_code=400,
        detail=N_(
            "This link is not valid. Your mail program may have cut it short: copy "
            "the whole address from the mail, or sign up again."
        ),
    )


def reader_from(token: str, purpose: str) -> tuple[int, int]:
    """(subscriber id, token version) of a reader's preference or unsubscribe link."""
    try:
        return parse_reader_subject(verified_subject(token, purpose))
    except InvalidToken as error:
        raise _not_valid() from error


def preferences_path(subscriber: Subscriber) -> str:
    settings = get_settings()
    token = sign_token(
        settings.resolved_secret_key,
        PREFERENCES_PURPOSE,
        reader_subject(subscriber.id, subscriber.token_version),
        expires_at=utcnow() + timedelta(days=settings.preference_link_valid_days),
    )
    return f"/preferences/{token}"


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


@router.post("/signup", response_class=HTMLResponse)
def signup_submit(request: Request, data: FormDep, session: SessionDep) -> Any:
    """Same answer for every valid address, known or not: a redirect to the thanks page."""
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
        sign_up(session, form, client_address(request), settings, utcnow())
    except SubscriberError as error:
        session.rollback()
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
def query_check(
    request: Request, session: SessionDep, q: str = ""
) -> dict[str, Any] | JSONResponse:
    """Validation as you type: ok, or the parser's message and character position."""
    settings = get_settings()
    if q.strip():
        try:
            count_form_helper_call(
                session, "query-check", client_address(request), settings, utcnow()
            )
        except RateLimitedError:
            session.rollback()
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
def interest_preview(
    request: Request, session: SessionDep, q: str = ""
) -> dict[str, Any] | JSONResponse:
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
        count_form_helper_call(session, "preview", client_address(request), settings, utcnow())
    except RateLimitedError:
        session.rollback()
        return _over_limit("preview")
    # The call is counted for good before the slow part, so that concurrent calls
    # from the same client see it while this one analyses articles.
    session.commit()
    try:
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


def _confirm_subject(token: str) -> tuple[int, str | None]:
    try:
        return parse_confirm_subject(verified_subject(token, CONFIRM_LINK_PURPOSE))
    except ValueError as error:
        raise _not_valid() from error


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str) -> Any:
    """A page with a button: mail scanners that prefetch the link confirm nothing."""
    _confirm_subject(token)
    return templates.TemplateResponse(request, "confirm.html", {"token": token, "outcome": None})


@router.post("/confirm/{token}", response_class=HTMLResponse, dependencies=[Depends(require_csrf)])
def confirm_now(request: Request, session: SessionDep, token: str) -> Any:
    subscriber_id, nonce = _confirm_subject(token)
    try:
        outcome = confirm(session, subscriber_id, utcnow(), get_settings(), nonce)
    except SubscriberError as error:
        raise HTTPException(status_code=400, detail=str(error)) from error
    if outcome is ConfirmOutcome.SUPERSEDED:
        raise HTTPException(
            status_code=400,
            detail=N_("This link has expired: sign up again and we will send you a fresh one."),
        )
    subscriber = session.get(Subscriber, subscriber_id)
    preferences_url = (
        preferences_path(subscriber)
        if subscriber is not None and outcome in (ConfirmOutcome.CONFIRMED, ConfirmOutcome.ALREADY)
        else None
    )
    return templates.TemplateResponse(
        request,
        "confirm.html",
        {"token": token, "outcome": outcome.value, "preferences_url": preferences_url},
    )


# --- the preference centre ---------------------------------------------------


def _load(session: Session, token: str) -> Subscriber:
    """The reader a live preference link names: valid, current version, not erased."""
    subscriber_id, version = reader_from(token, PREFERENCES_PURPOSE)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise HTTPException(
            status_code=404,
            detail=N_(
                "This subscription no longer exists: its data was deleted. "
                "You can sign up again at any time."
            ),
        )
    if version != subscriber.token_version:
        raise HTTPException(status_code=400, detail=STALE_LINK)
    return subscriber


def _load_for_change(session: Session, token: str) -> Subscriber:
    """``_load``, counting one change against the reader's hourly cap (429 past it)."""
    subscriber = _load(session, token)
    try:
        check_preference_writes(session, subscriber, get_settings(), utcnow())
    except RateLimitedError as error:
        raise HTTPException(
            status_code=429,
            detail=PREFERENCE_WRITES_LIMITED,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from error
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
def preferences(request: Request, session: SessionDep, token: str) -> Any:
    subscriber = _load_for_change(session, token)
    return _centre(request, token, subscriber)


@router.post(
    "/preferences/{token}/settings",
    response_class=HTMLResponse,
)
def preferences_settings(request: Request, data: FormDep, session: SessionDep, token: str) -> Any:
    form = SettingsForm(
        frequency=_text(data, "frequency"),
        timezone=_text(data, "timezone"),
        send_at=_text(data, "send_at"),
        language=_text(data, "language"),
        quiet_start=_text(data, "quiet_start"),
        quiet_end=_text(data, "quiet_end"),
    )
    subscriber = _load_for_change(session, token)
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
)
def preferences_add_interest(
    request: Request, data: FormDep, session: SessionDep, token: str
) -> Any:
    query, regions = _text(data, "query"), _regions(data)
    subscriber = _load_for_change(session, token)
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
)
def preferences_edit_interest(
    request: Request, data: FormDep, session: SessionDep, token: str, interest_id: int
) -> Any:
    query, regions = _text(data, "query"), _regions(data)
    subscriber = _load_for_change(session, token)
    try:
        edit_interest(session, subscriber, interest_id, query, regions, get_settings(), utcnow())
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
def preferences_remove_interest(session: SessionDep, token: str, interest_id: int) -> Any:
    subscriber = _load_for_change(session, token)
    try:
        remove_interest(session, subscriber, interest_id)
    except SubscriberError as error:
        raise HTTPException(status_code=404, detail=str(error)) from error
    return _saved(token, "interest-removed")


@router.post(
    "/preferences/{token}/pause", response_class=HTMLResponse, dependencies=[Depends(require_csrf)]
)
def preferences_pause(session: SessionDep, token: str) -> Any:
    set_paused(_load_for_change(session, token), paused=True)
    return _saved(token, "paused")


@router.post(
    "/preferences/{token}/resume",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_resume(session: SessionDep, token: str) -> Any:
    set_paused(_load_for_change(session, token), paused=False)
    return _saved(token, "resumed")


@router.post(
    "/preferences/{token}/unsubscribe",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_unsubscribe(request: Request, session: SessionDep, token: str) -> Any:
    """Never capped: leaving must always work. It ends every link, this page's too."""
    subscriber = _load(session, token)
    unsubscribe(session, subscriber.id, utcnow())
    return templates.TemplateResponse(request, "unsubscribe.html", {"token": token, "done": True})


@router.post(
    "/preferences/{token}/sign-out",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_sign_out(request: Request, session: SessionDep, token: str) -> Any:
    """Every preference and unsubscribe link sent so far stops working, this one too."""
    sign_out_links(_load(session, token))
    return templates.TemplateResponse(request, "signed_out.html", {})


@router.get("/preferences/{token}/export")
def preferences_export(session: SessionDep, token: str) -> Any:
    """The right of access: everything stored about the reader, as a JSON download."""
    data = export_data(session, _load(session, token))
    return JSONResponse(
        data,
        headers={
            "Content-Disposition": f'attachment; filename="{EXPORT_FILENAME}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/preferences/{token}/erase", response_class=HTMLResponse)
def preferences_erase_page(request: Request, session: SessionDep, token: str) -> Any:
    """The confirmation step before erasure: nothing is deleted by a GET."""
    _load(session, token)
    return templates.TemplateResponse(request, "erase.html", {"token": token, "done": False})


@router.post(
    "/preferences/{token}/erase",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
def preferences_erase(request: Request, session: SessionDep, token: str) -> Any:
    erase(session, _load(session, token).id, utcnow())
    return templates.TemplateResponse(request, "erase.html", {"token": token, "done": True})


# --- one-click unsubscribe -----------------------------------------------------


def _unsubscribe_target(session: Session, token: str) -> Subscriber | None:
    """The reader a live unsubscribe link names, or None when there is nothing
    left to do: the link was used already (or the reader erased), so the page
    says they are unsubscribed. A link from before a new sign-up is refused."""
    subscriber_id, version = reader_from(token, UNSUBSCRIBE_PURPOSE)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if version != subscriber.token_version:
        if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
            return None
        raise HTTPException(status_code=400, detail=STALE_LINK)
    return subscriber


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, session: SessionDep, token: str) -> Any:
    """A page with a button: link scanners that fetch URLs change nothing."""
    done = _unsubscribe_target(session, token) is None
    return templates.TemplateResponse(request, "unsubscribe.html", {"token": token, "done": done})


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_now(request: Request, session: SessionDep, token: str) -> Any:
    """RFC 8058 one-click: mail clients POST ``List-Unsubscribe=One-Click`` here.

    The signed token is the credential, so no CSRF token is asked for: a mail
    client cannot have one, and the worst a forged post can do is what the
    link's owner asked for.
    """
    subscriber = _unsubscribe_target(session, token)
    if subscriber is not None:
        unsubscribe(session, subscriber.id, utcnow())
    return templates.TemplateResponse(request, "unsubscribe.html", {"token": token, "done": True})
