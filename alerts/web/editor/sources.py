"""Feed sources: list, add, edit, pause, resume, poll now.

The rules (URL and poll-interval checks, tags) live in ``alerts.sources``;
these routes turn forms into its arguments and its refusals into messages
next to the field they concern.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from alerts import sources as source_rules
from alerts.config import get_settings
from alerts.db import utcnow
from alerts.models import Source, User
from alerts.web.console import EditorDep, see_other
from alerts.web.dependencies import FormDep, SessionDep
from alerts.web.editor.common import HOME_PATH, editor_router, field_text, render

router = editor_router()


def _sources_page(
    request: Request,
    session: Session,
    user: User,
    form: source_rules.SourceForm | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings()
    return render(
        request,
        "sources.html",
        {
            "user": user,
            "sources": session.scalars(select(Source).order_by(Source.name, Source.id)).all(),
            "stored": source_rules.article_counts(session),
            "form": form
            or source_rules.SourceForm("", "", str(settings.source_default_poll_minutes), ""),
            "errors": errors or {},
            "min_minutes": source_rules.MIN_POLL_MINUTES,
            "max_minutes": source_rules.MAX_POLL_MINUTES,
        },
        status_code,
    )


def _source_form(form: FormData) -> source_rules.SourceForm:
    return source_rules.SourceForm(
        name=field_text(form, "name"),
        url=field_text(form, "url"),
        poll_minutes=field_text(form, "poll_minutes"),
        tags=field_text(form, "tags"),
    )


def _source(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise HTTPException(status_code=404, detail="No such source.")
    return source


@router.get("/sources", response_class=HTMLResponse)
def sources(request: Request, session: SessionDep, user: EditorDep) -> Any:
    return _sources_page(request, session, user)


@router.post("/sources", response_class=HTMLResponse)
def add_source(request: Request, session: SessionDep, user: EditorDep, data: FormDep) -> Any:
    settings = get_settings()
    form = _source_form(data)
    try:
        source_rules.create_source(session, user, form, settings, utcnow())
    except source_rules.SourceInputError as error:
        return _sources_page(request, session, user, form, {error.field: str(error)}, 422)
    return see_other(f"{HOME_PATH}/sources?notice=source_added")


def _source_page(
    request: Request,
    user: User,
    source: Source,
    form: source_rules.SourceForm,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "source.html",
        {
            "user": user,
            "source": source,
            "form": form,
            "errors": errors or {},
            "min_minutes": source_rules.MIN_POLL_MINUTES,
            "max_minutes": source_rules.MAX_POLL_MINUTES,
        },
        status_code,
    )


@router.get("/sources/{source_id:int}", response_class=HTMLResponse)
def source_page(request: Request, session: SessionDep, user: EditorDep, source_id: int) -> Any:
    source = _source(session, source_id)
    form = source_rules.SourceForm(
        source.name, source.url, str(source.poll_minutes), ", ".join(source.default_tags or [])
    )
    return _source_page(request, user, source, form)


@router.post("/sources/{source_id:int}", response_class=HTMLResponse)
def edit_source(
    request: Request, session: SessionDep, user: EditorDep, data: FormDep, source_id: int
) -> Any:
    settings = get_settings()
    form = _source_form(data)
    source = _source(session, source_id)
    try:
        source_rules.update_source(session, user, source, form, settings, utcnow())
    except source_rules.SourceInputError as error:
        session.rollback()
        source = _source(session, source_id)
        return _source_page(request, user, source, form, {error.field: str(error)}, 422)
    return see_other(f"{HOME_PATH}/sources/{source_id}?notice=source_saved")


def _source_action(
    session: Session, user: User, source_id: int, action: source_rules.SourceAction
) -> RedirectResponse:
    source_rules.act_on_source(session, user, _source(session, source_id), action, utcnow())
    notices = {"poll": "polling", "pause": "paused", "resume": "resumed"}
    return see_other(f"{HOME_PATH}/sources?notice={notices[action]}")


@router.post("/sources/{source_id:int}/pause")
def pause_source(session: SessionDep, user: EditorDep, source_id: int) -> Any:
    return _source_action(session, user, source_id, "pause")


@router.post("/sources/{source_id:int}/resume")
def resume_source(session: SessionDep, user: EditorDep, source_id: int) -> Any:
    return _source_action(session, user, source_id, "resume")


@router.post("/sources/{source_id:int}/poll")
def poll_source_now(session: SessionDep, user: EditorDep, source_id: int) -> Any:
    return _source_action(session, user, source_id, "poll")
