"""Newsletter issues: the list, composing, preview, tests, schedule, recurrence, progress.

Every change writes an audit entry (actor: the staff user; details name
records by id, never a subscriber's address) in the request's unit of work.
The newsletter rules live in ``alerts.newsletters``; these routes turn forms
into its arguments and its refusals into messages next to the field they
concern.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.config import get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.i18n import LANGUAGES, ReaderLocale
from alerts.mailer import process_mailer, process_renderer
from alerts.models import Article, Frequency, Newsletter, NewsletterStatus, User
from alerts.newsletters import (
    NOT_STARTED,
    PLACEHOLDERS,
    NewsletterError,
    NotRecurrableError,
    SampleReader,
    approve,
    cancel,
    create_newsletter,
    local_moment,
    make_recurring,
    preview_sample,
    progress,
    progress_by_issue,
    remaining_test_sends,
    revise,
    sample_readers,
    schedule,
    send_now,
    send_test,
    upcoming,
)
from alerts.schedule import zone
from alerts.web.console import EditorDep, framed_mail, see_other
from alerts.web.dependencies import FormDep, SessionDep
from alerts.web.editor.common import HOME_PATH, editor_router, field_text, render, split_list
from alerts.web.editor.issue_form import (
    MAX_SECTION_DAYS,
    MAX_SECTION_LIMIT,
    IssueForm,
    clean_issue,
)
from alerts.web.public import timezones

# Kinds of reader (language and time zone) offered in the preview's list.
PREVIEW_CHOICES = 50
PROGRESS_REFRESH_SECONDS = 3
# Occurrences of a recurring issue listed on its progress page.
UPCOMING_SHOWN = 3
# Statuses whose progress page keeps refreshing itself.
LIVE_STATUSES = frozenset({NewsletterStatus.SCHEDULED, NewsletterStatus.SENDING})
# Forms of the issue page that stay on it after sending has started.
ALWAYS_SHOWN = frozenset({"cancel", "approve"})

router = editor_router()


def _issue(session: Session, newsletter_id: int) -> Newsletter:
    newsletter = session.get(Newsletter, newsletter_id)
    if newsletter is None:
        raise HTTPException(status_code=404, detail="No such newsletter issue.")
    return newsletter


def _issue_url(newsletter_id: int, notice: str) -> str:
    return f"{HOME_PATH}/newsletters/{newsletter_id}?notice={notice}"


# --- the issues list ------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def issues(request: Request, session: SessionDep, user: EditorDep) -> Any:
    newsletters = session.scalars(select(Newsletter).order_by(Newsletter.id.desc())).all()
    counts = progress_by_issue(session, [n.id for n in newsletters])
    return render(
        request,
        "issues.html",
        {
            "user": user,
            "issues": [(n, counts[n.id]) for n in newsletters],
            "held": [n for n in newsletters if n.status is NewsletterStatus.AWAITING_APPROVAL],
            "recurring": [n for n in newsletters if n.recurrence and n.parent_id is None],
        },
    )


# --- composing ------------------------------------------------------------------------


def _compose_page(
    request: Request,
    session: Session,
    user: User,
    form: IssueForm,
    newsletter: Newsletter | None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    picked_ids = {
        int(part)
        for row in form.rows
        if row.kind == "picked"
        for part in split_list(row.articles)
        if part.isdigit()
    }
    titles = dict(
        session.execute(select(Article.id, Article.title).where(Article.id.in_(picked_ids))).all()
    )
    context: dict[str, Any] = {
        "user": user,
        "form": form,
        "slots": form.slots(),
        "issue": newsletter,
        "titles": titles,
        "errors": errors or {},
        "error": error,
        "placeholders": sorted(PLACEHOLDERS),
        "frequencies": [f.value for f in Frequency],
        "editable": newsletter is None or newsletter.status in NOT_STARTED,
        "tests_left": remaining_test_sends(session, user.id, get_settings(), utcnow()),
        "timezones": timezones(),
        "max_days": MAX_SECTION_DAYS,
        "max_limit": MAX_SECTION_LIMIT,
    }
    if newsletter is not None:
        context |= _issue_facts(session, newsletter)
    return render(request, "issue.html", context, status_code)


def _issue_facts(session: Session, newsletter: Newsletter) -> dict[str, Any]:
    now = utcnow()
    tz = zone(newsletter.timezone)
    return {
        "progress": progress(session, newsletter.id),
        "today": now.astimezone(tz).strftime("%Y-%m-%d"),
        "soon": (now + timedelta(hours=1)).astimezone(tz).strftime("%H:00"),
    }


@router.get("/newsletters/new", response_class=HTMLResponse)
def new_issue(request: Request, session: SessionDep, user: EditorDep) -> Any:
    return _compose_page(request, session, user, IssueForm(), None)


@router.post("/newsletters", response_class=HTMLResponse)
def create_issue(request: Request, session: SessionDep, user: EditorDep, data: FormDep) -> Any:
    # A plain def: validation parses queries and loads the gazetteer, off the event loop.
    settings = get_settings()
    form = IssueForm.from_form(data)
    clean, errors = clean_issue(session, form, settings)
    if clean is None:
        return _compose_page(request, session, user, form, None, errors, status_code=422)
    newsletter = create_newsletter(
        session,
        user,
        subject=clean.subject,
        preheader=clean.preheader,
        intro_markdown=clean.intro,
        sections=clean.sections,
        audience=clean.audience,
        settings=settings,
        now=utcnow(),
    )
    return see_other(f"{HOME_PATH}/newsletters/{newsletter.id}?notice=created")


@router.get("/newsletters/{newsletter_id:int}", response_class=HTMLResponse)
def issue_page(request: Request, session: SessionDep, user: EditorDep, newsletter_id: int) -> Any:
    newsletter = _issue(session, newsletter_id)
    return _compose_page(request, session, user, IssueForm.from_issue(newsletter), newsletter)


@router.post("/newsletters/{newsletter_id:int}", response_class=HTMLResponse)
def edit_issue(
    request: Request, session: SessionDep, user: EditorDep, data: FormDep, newsletter_id: int
) -> Any:
    settings = get_settings()
    form = IssueForm.from_form(data)
    newsletter = _issue(session, newsletter_id)
    clean, errors = clean_issue(session, form, settings)
    if clean is None:
        return _compose_page(request, session, user, form, newsletter, errors, status_code=422)
    values = {
        "subject": clean.subject,
        "preheader": " ".join(clean.preheader.split()),
        "intro_markdown": clean.intro,
        "sections": clean.sections,
        "audience": clean.audience,
    }
    try:
        revise(session, user, newsletter_id, values)
    except NewsletterError as refusal:
        return _compose_page(
            request, session, user, form, newsletter, error=str(refusal), status_code=409
        )
    return see_other(_issue_url(newsletter_id, "saved"))


def _refused(
    request: Request,
    session: Session,
    user: User,
    newsletter: Newsletter,
    where: str,
    message: str,
    status_code: int = 422,
) -> HTMLResponse:
    """The issue page again, with the domain's refusal next to the form that caused it
    (or at the top, when the issue has started and that form is no longer shown)."""
    session.refresh(newsletter)
    shown = where in ALWAYS_SHOWN or newsletter.status in NOT_STARTED
    return _compose_page(
        request,
        session,
        user,
        IssueForm.from_issue(newsletter),
        newsletter,
        {where: message} if shown else {},
        error=None if shown else message,
        status_code=status_code,
    )


# --- preview and test ---------------------------------------------------------------------


def _samples(session: Session, newsletter: Newsletter) -> list[SampleReader]:
    return sample_readers(session, newsletter.audience)[:PREVIEW_CHOICES]


def _sample_label(sample: SampleReader) -> str:
    """What the preview's list shows: how the reader reads, never who they are."""
    language = LANGUAGES.get(sample.language, sample.language)
    readers = "1 reader" if sample.readers == 1 else f"{sample.readers} readers"
    return f"{language}, {sample.timezone} ({readers})"


def _chosen(samples: list[SampleReader], sample: int) -> tuple[int, ReaderLocale | None]:
    """The picked kind of reader; the most common one when the number is off the list."""
    if not samples:
        return 0, None
    index = sample if 0 <= sample < len(samples) else 0
    return index, ReaderLocale.of(samples[index].language, samples[index].timezone)


@router.get("/newsletters/{newsletter_id:int}/preview", response_class=HTMLResponse)
def preview_page(
    request: Request, session: SessionDep, user: EditorDep, newsletter_id: int, sample: int = 0
) -> Any:
    """The issue as a kind of reader of its segment gets it: no address, no live link."""
    newsletter = _issue(session, newsletter_id)
    samples = _samples(session, newsletter)
    index, locale = _chosen(samples, sample)
    mail = preview_sample(
        session, newsletter_id, locale, get_settings(), utcnow(), process_renderer()
    )
    return render(
        request,
        "preview.html",
        {
            "user": user,
            "issue": newsletter,
            "sample": index,
            "choices": [_sample_label(s) for s in samples],
            "mail": mail,
        },
    )


@router.get("/newsletters/{newsletter_id:int}/preview.html")
def preview_html(session: SessionDep, user: EditorDep, newsletter_id: int, sample: int = 0) -> Any:
    """The HTML part alone, framed by the preview page under a policy of its own."""
    newsletter = _issue(session, newsletter_id)
    _, locale = _chosen(_samples(session, newsletter), sample)
    mail = preview_sample(
        session, newsletter_id, locale, get_settings(), utcnow(), process_renderer()
    )
    return framed_mail(mail.html)


@router.post("/newsletters/{newsletter_id:int}/test", response_class=HTMLResponse)
def test_issue(
    request: Request, session: SessionDep, user: EditorDep, data: FormDep, newsletter_id: int
) -> Any:
    """Promise the tests, commit, then send them in this request: editors wait for it."""
    settings = get_settings()
    addresses = split_list(field_text(data, "addresses"))
    newsletter = _issue(session, newsletter_id)
    if not addresses:
        return _refused(request, session, user, newsletter, "test", "give an address")
    now = utcnow()
    try:
        ids = send_test(session, user, newsletter_id, addresses, settings, now)
    except NewsletterError as error:
        return _refused(request, session, user, newsletter, "test", str(error))
    # The sender claims the promised rows in its own transactions: they must be
    # committed first, and this request's transaction must not stay open meanwhile.
    session.commit()
    report = send_deliveries(get_database(settings), ids, process_mailer(settings), utcnow)
    return see_other(
        _issue_url(newsletter_id, "tested" if report.sent == len(ids) else "test_deferred")
    )


# --- schedule, send, cancel, recur, approve -----------------------------------------------


@router.post("/newsletters/{newsletter_id:int}/schedule", response_class=HTMLResponse)
def schedule_issue(
    request: Request, session: SessionDep, user: EditorDep, data: FormDep, newsletter_id: int
) -> Any:
    when = f"{field_text(data, 'date')} {field_text(data, 'time')}"
    timezone = field_text(data, "timezone") or "UTC"
    newsletter = _issue(session, newsletter_id)
    try:
        at = local_moment(when, timezone)
        schedule(session, newsletter_id, at, timezone, utcnow(), actor=user)
    except NewsletterError as error:
        return _refused(request, session, user, newsletter, "schedule", str(error))
    return see_other(_issue_url(newsletter_id, "scheduled"))


@router.post("/newsletters/{newsletter_id:int}/send-now", response_class=HTMLResponse)
def send_issue_now(
    request: Request, session: SessionDep, user: EditorDep, newsletter_id: int
) -> Any:
    newsletter = _issue(session, newsletter_id)
    try:
        send_now(session, newsletter_id, utcnow(), actor=user)
    except NewsletterError as error:
        return _refused(request, session, user, newsletter, "schedule", str(error), 409)
    return see_other(f"{HOME_PATH}/newsletters/{newsletter_id}/progress?notice=sending")


@router.post("/newsletters/{newsletter_id:int}/cancel", response_class=HTMLResponse)
def cancel_issue(request: Request, session: SessionDep, user: EditorDep, newsletter_id: int) -> Any:
    newsletter = _issue(session, newsletter_id)
    if not cancel(session, newsletter_id, actor=user):
        session.refresh(newsletter)
        message = f"issue {newsletter_id} is {newsletter.status.value}; too late to cancel"
        return _refused(request, session, user, newsletter, "cancel", message, 409)
    return see_other(_issue_url(newsletter_id, "cancelled"))


@router.post("/newsletters/{newsletter_id:int}/recur", response_class=HTMLResponse)
def recur_issue(
    request: Request, session: SessionDep, user: EditorDep, data: FormDep, newsletter_id: int
) -> Any:
    cron = " ".join(field_text(data, "cron").split())
    timezone = field_text(data, "timezone") or "UTC"
    approval = field_text(data, "approval") == "true"
    newsletter = _issue(session, newsletter_id)
    try:
        make_recurring(
            session,
            newsletter_id,
            cron,
            timezone,
            approval_required=approval,
            now=utcnow(),
            actor=user,
        )
    except NotRecurrableError as error:
        return _refused(request, session, user, newsletter, "recur", str(error), 409)
    except NewsletterError as error:
        session.rollback()
        return _refused(request, session, user, newsletter, "recur", str(error))
    return see_other(_issue_url(newsletter_id, "recurring"))


@router.post("/newsletters/{newsletter_id:int}/approve", response_class=HTMLResponse)
def approve_issue(
    request: Request, session: SessionDep, user: EditorDep, newsletter_id: int
) -> Any:
    newsletter = _issue(session, newsletter_id)
    if not approve(session, newsletter_id, actor=user):
        session.refresh(newsletter)
        message = f"issue {newsletter_id} is {newsletter.status.value}; nothing to approve"
        return _refused(request, session, user, newsletter, "approve", message, 409)
    return see_other(_issue_url(newsletter_id, "approved"))


# --- progress -------------------------------------------------------------------------------


@router.get("/newsletters/{newsletter_id:int}/progress", response_class=HTMLResponse)
def progress_page(
    request: Request, session: SessionDep, user: EditorDep, newsletter_id: int
) -> Any:
    newsletter = _issue(session, newsletter_id)
    return render(
        request,
        "progress.html",
        {
            "user": user,
            "issue": newsletter,
            "tally": progress(session, newsletter_id),
            "refresh": PROGRESS_REFRESH_SECONDS if newsletter.status in LIVE_STATUSES else 0,
            "upcoming": upcoming(newsletter, UPCOMING_SHOWN, utcnow()),
        },
    )


@router.get("/newsletters/{newsletter_id:int}/progress.json")
def progress_json(session: SessionDep, user: EditorDep, newsletter_id: int) -> Any:
    newsletter = _issue(session, newsletter_id)
    counts = progress(session, newsletter_id)
    return JSONResponse({"id": newsletter.id, "status": newsletter.status.value, "counts": counts})
