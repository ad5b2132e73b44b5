"""What every editors' page uses: the page renderer, its notices, form field readers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData
from starlette.requests import Request

from alerts.schedule import zone
from alerts.web.console import EDITOR_PATH, csrf_on_posts
from alerts.web.templating import templates

HOME_PATH = EDITOR_PATH
# Fixed texts chosen by a code in the redirect URL: nothing typed is echoed back.
NOTICES = {
    "created": "Draft saved.",
    "saved": "Changes saved.",
    "tested": "Test mail sent.",
    "test_deferred": "Test mail promised, but not all of it could be sent yet; "
    "the workers retry it.",
    "scheduled": "Issue scheduled.",
    "sending": "Sending starts at the next clock tick.",
    "cancelled": "Issue cancelled.",
    "recurring": "Issue made recurring.",
    "approved": "Issue approved: it goes at its time.",
    "source_added": "Source added; it is polled at the next clock tick.",
    "source_saved": "Source saved.",
    "paused": "Source paused.",
    "resumed": "Source resumed; it is polled at the next clock tick.",
    "polling": "The source is polled at the next clock tick.",
}


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return templates.TemplateResponse(
        request,
        f"editor/{name}",
        {"notice": notice, "error": None, "errors": {}, "local": local_time, **context},
        status_code=status_code,
    )


def local_time(moment: datetime | None, timezone: str) -> str:
    """A stored UTC time as the issue's editors think of it."""
    if moment is None:
        return ""
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M")


def split_list(text: str) -> list[str]:
    """Items typed one per line or separated by commas."""
    return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]


def field_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def field_texts(form: FormData, name: str) -> list[str]:
    return [value for value in form.getlist(name) if isinstance(value, str)]


def editor_router() -> APIRouter:
    """A router of the desk: under ``/editor``, every POST checked for its CSRF token."""
    return APIRouter(
        prefix=HOME_PATH, dependencies=[Depends(csrf_on_posts)], include_in_schema=False
    )
