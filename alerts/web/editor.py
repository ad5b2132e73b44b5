"""The editors' desk: sources, newsletter issues, previews, tests, schedules, recurrence.

Editors and admins use it; strangers are sent to the console's login page.
It reuses the console's session, CSRF check and audit log: every POST needs
the form's token, and every change writes an audit entry (actor: the staff
user; details name records by id, never a subscriber's address) in the same
transaction. The newsletter rules live in ``alerts.newsletters``; this
module turns forms into its arguments and its refusals into messages shown
next to the field they concern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from alerts import audit
from alerts import sources as source_rules
from alerts.config import Settings, get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.outbound import send_deliveries
from alerts.delivery.render import MailRenderer
from alerts.i18n import LANGUAGES, ReaderLocale
from alerts.mailer import default_mailer
from alerts.matching import QueryError, RegionNotFoundError
from alerts.matching.service import preview_interest
from alerts.models import (
    Article,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Frequency,
    Newsletter,
    NewsletterStatus,
    Role,
    Source,
    User,
)
from alerts.newsletters import (
    DEFAULT_SECTION_DAYS,
    DEFAULT_SECTION_LIMIT,
    MAX_SUBJECT,
    NOT_STARTED,
    PLACEHOLDERS,
    TEST_AUDIT_ACTION,
    NewsletterError,
    NotRecurrableError,
    SampleReader,
    approve,
    cancel,
    check_placeholders,
    create_newsletter,
    local_moment,
    make_recurring,
    next_occurrence,
    preview_sample,
    progress,
    remaining_test_sends,
    revise,
    sample_readers,
    schedule,
    send_now,
    send_test,
    validate_audience,
    validate_sections,
)
from alerts.regions import default_gazetteer
from alerts.schedule import zone
from alerts.web.admin import csrf_on_posts, signed_in
from alerts.web.public import timezones
from alerts.web.templating import templates

HOME_PATH = "/editor"
EDITOR_ROLES = frozenset({Role.EDITOR, Role.ADMIN})
# Empty section slots shown on the compose form (one more than used when editing).
SECTION_SLOTS = 3
MAX_SECTION_DAYS = 90
MAX_SECTION_LIMIT = 50
# Article search: how far back and how many results the picker offers.
SEARCH_DAYS = 30
SEARCH_LIMIT = 20
# Kinds of reader (language and time zone) offered in the preview's list.
PREVIEW_CHOICES = 50
PROGRESS_REFRESH_SECONDS = 3
# Statuses whose progress page keeps refreshing itself.
LIVE_STATUSES = frozenset({NewsletterStatus.SCHEDULED, NewsletterStatus.SENDING})
# The preview is the reader's mail: its inline styles may apply, nothing may run,
# and it may be framed only by our own pages.
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
# Forms of the issue page that stay on it after sending has started.
ALWAYS_SHOWN = frozenset({"cancel", "approve"})
SECTION_ERROR = re.compile(r"^section (\d+): ")
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

router = APIRouter(prefix=HOME_PATH, dependencies=[Depends(csrf_on_posts)], include_in_schema=False)


class EditorsOnly(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=403, detail="This page is for editors.")


def editor_user(request: Request, session: Session) -> User:
    user = signed_in(request, session)
    if user.role not in EDITOR_ROLES:
        raise EditorsOnly
    return user


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


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def local_time(moment: datetime | None, timezone: str) -> str:
    """A stored UTC time as the issue's editors think of it."""
    if moment is None:
        return ""
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M")


def _split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _texts(form: FormData, name: str) -> list[str]:
    return [value for value in form.getlist(name) if isinstance(value, str)]


# --- the issues list ------------------------------------------------------------------


def _progress_by_issue(session: Session) -> dict[int, dict[str, int]]:
    """Ledger states per issue in one grouped query, not one per row."""
    counts: dict[int, dict[str, int]] = {}
    for newsletter_id, state, count in session.execute(
        select(Delivery.newsletter_id, Delivery.state, func.count(Delivery.id))
        .where(Delivery.kind == DeliveryKind.NEWSLETTER)
        .group_by(Delivery.newsletter_id, Delivery.state)
    ):
        if newsletter_id is None:
            continue
        row = counts.setdefault(newsletter_id, {s.value: 0 for s in DeliveryState})
        row[state.value] = count
    return counts


@router.get("", response_class=HTMLResponse)
def issues(request: Request) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletters = session.scalars(select(Newsletter).order_by(Newsletter.id.desc())).all()
        empty = {s.value: 0 for s in DeliveryState}
        counts = _progress_by_issue(session)
        return render(
            request,
            "issues.html",
            {
                "user": user,
                "issues": [(n, counts.get(n.id, empty)) for n in newsletters],
                "held": [n for n in newsletters if n.status is NewsletterStatus.AWAITING_APPROVAL],
                "recurring": [n for n in newsletters if n.recurrence and n.parent_id is None],
            },
        )


# --- composing ------------------------------------------------------------------------


@dataclass
class SectionRow:
    """One section as the form shows it; ``kind`` is "query" or "picked"."""

    title: str = ""
    kind: str = "query"
    query: str = ""
    regions: str = ""
    days: str = str(DEFAULT_SECTION_DAYS)
    limit: str = str(DEFAULT_SECTION_LIMIT)
    articles: str = ""

    def is_empty(self) -> bool:
        return not (self.title.strip() or self.query.strip() or self.regions.strip()) and not (
            self.articles.strip()
        )


@dataclass
class IssueForm:
    subject: str = ""
    preheader: str = ""
    intro: str = ""
    rows: list[SectionRow] = field(default_factory=list)
    segment: bool = False
    regions: str = ""
    words: str = ""
    languages: str = ""
    frequencies: list[str] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: FormData) -> IssueForm:
        columns = [
            _texts(form, f"section_{name}")
            for name in ("title", "kind", "query", "regions", "days", "limit", "articles")
        ]
        count = max((len(column) for column in columns), default=0)

        def cell(column: list[str], index: int) -> str:
            return column[index] if index < len(column) else ""

        rows = [SectionRow(*(cell(column, i) for column in columns)) for i in range(count)]
        return cls(
            subject=_text(form, "subject"),
            preheader=_text(form, "preheader"),
            intro=_text(form, "intro").replace("\r\n", "\n"),
            rows=rows,
            segment=_text(form, "audience") == "segment",
            regions=_text(form, "audience_regions"),
            words=_text(form, "audience_words"),
            languages=_text(form, "audience_languages"),
            frequencies=_texts(form, "audience_frequency"),
        )

    @classmethod
    def from_issue(cls, newsletter: Newsletter) -> IssueForm:
        rows = []
        for section in newsletter.sections:
            if "article_ids" in section:
                ids = ", ".join(str(i) for i in section["article_ids"])
                rows.append(SectionRow(title=section["title"], kind="picked", articles=ids))
            else:
                rows.append(
                    SectionRow(
                        title=section["title"],
                        query=section.get("query") or "",
                        regions=", ".join(section.get("regions") or []),
                        days=str(section.get("days", DEFAULT_SECTION_DAYS)),
                        limit=str(section.get("limit", DEFAULT_SECTION_LIMIT)),
                    )
                )
        audience = newsletter.audience or {}
        return cls(
            subject=newsletter.subject,
            preheader=newsletter.preheader,
            intro=newsletter.intro_markdown,
            rows=rows,
            segment=bool(audience),
            regions=", ".join(audience.get("regions", [])),
            words=", ".join(audience.get("words", [])),
            languages=", ".join(audience.get("languages", [])),
            frequencies=list(audience.get("frequencies", [])),
        )

    def slots(self) -> list[SectionRow]:
        """The rows to show: what was typed, and room for more."""
        used = [row for row in self.rows if not row.is_empty()]
        return used + [SectionRow() for _ in range(max(SECTION_SLOTS - len(used), 1))]


@dataclass
class CleanIssue:
    subject: str
    preheader: str
    intro: str
    sections: list[dict[str, Any]]
    audience: dict[str, Any]


def _whole_number(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise NewsletterError(f"{what} is a whole number from {low} to {high}")
    return value


def _section(row: SectionRow) -> dict[str, Any]:
    """One form row as ``validate_sections`` expects it; raises on non-numbers."""
    if row.kind == "picked":
        try:
            ids = [int(part) for part in _split(row.articles)]
        except ValueError as error:
            raise NewsletterError("article ids are numbers, separated by commas") from error
        if not ids:
            raise NewsletterError("pick at least one article (search below)")
        return {"title": row.title, "article_ids": ids}
    return {
        "title": row.title,
        "query": row.query.strip() or None,
        "regions": _split(row.regions),
        "days": _whole_number(row.days, 1, MAX_SECTION_DAYS, "days"),
        "limit": _whole_number(row.limit, 1, MAX_SECTION_LIMIT, "the number of articles"),
    }


def _clean_issue(
    session: Session, form: IssueForm, settings: Settings
) -> tuple[CleanIssue | None, dict[str, str]]:
    """Check each field on its own, so every problem is shown next to its field."""
    errors: dict[str, str] = {}
    subject = " ".join(form.subject.split())
    if not subject or len(subject) > MAX_SUBJECT:
        errors["subject"] = f"a subject of 1 to {MAX_SUBJECT} characters is needed"
    for name, text in (
        ("subject", form.subject),
        ("preheader", form.preheader),
        ("intro", form.intro),
    ):
        try:
            check_placeholders(text)
        except NewsletterError as error:
            errors.setdefault(name, str(error))

    slots = form.slots()
    sections: list[dict[str, Any]] = []
    slot_of: list[int] = []
    for index, row in enumerate(slots):
        if row.is_empty():
            continue
        try:
            sections.append(_section(row))
            slot_of.append(index)
        except NewsletterError as error:
            errors[f"section-{index}"] = str(error)
    cleaned_sections: list[dict[str, Any]] = []
    try:
        cleaned_sections = validate_sections(session, sections, settings)
    except NewsletterError as error:
        message = str(error)
        found = SECTION_ERROR.match(message)
        number = int(found.group(1)) if found else 1
        errors[f"section-{slot_of[number - 1]}"] = message[found.end() :] if found else message

    wanted: dict[str, Any] = {}
    if form.segment:
        wanted = {
            "regions": _split(form.regions),
            "words": _split(form.words),
            "languages": _split(form.languages),
            "frequencies": form.frequencies,
        }
        if not any(wanted.values()):
            errors["audience"] = "a segment needs a region, a word, a language or a frequency"
    audience: dict[str, Any] = {}
    try:
        audience = validate_audience(wanted, settings)
    except NewsletterError as error:
        errors["audience"] = str(error)
    if errors:
        return None, errors
    return CleanIssue(subject, form.preheader, form.intro, cleaned_sections, audience), {}


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
        for part in _split(row.articles)
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
def new_issue(request: Request) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        return _compose_page(request, session, user, IssueForm(), None)


@router.post("/newsletters", response_class=HTMLResponse)
async def create_issue(request: Request) -> Any:
    form = IssueForm.from_form(await request.form())
    # Validation parses queries and loads the gazetteer: off the event loop.
    return await run_in_threadpool(_create_issue, request, form)


def _create_issue(request: Request, form: IssueForm) -> Response:
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        user = editor_user(request, session)
        clean, errors = _clean_issue(session, form, settings)
        if clean is None:
            return _compose_page(request, session, user, form, None, errors, status_code=422)
        newsletter = create_newsletter(
            session,
            subject=clean.subject,
            preheader=clean.preheader,
            intro_markdown=clean.intro,
            sections=clean.sections,
            audience=clean.audience,
            settings=settings,
            now=utcnow(),
            created_by_id=user.id,
        )
        audit.record(
            session,
            user,
            "newsletter.create",
            "newsletter",
            newsletter.id,
            {"sections": len(clean.sections), "segment": sorted(clean.audience)},
        )
        return see_other(f"{HOME_PATH}/newsletters/{newsletter.id}?notice=created")


def _issue(session: Session, newsletter_id: int) -> Newsletter:
    newsletter = session.get(Newsletter, newsletter_id)
    if newsletter is None:
        raise HTTPException(status_code=404, detail="No such newsletter issue.")
    return newsletter


def _issue_url(newsletter_id: int, notice: str) -> str:
    return f"{HOME_PATH}/newsletters/{newsletter_id}?notice={notice}"


@router.get("/newsletters/{newsletter_id:int}", response_class=HTMLResponse)
def issue_page(request: Request, newsletter_id: int) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        return _compose_page(request, session, user, IssueForm.from_issue(newsletter), newsletter)


@router.post("/newsletters/{newsletter_id:int}", response_class=HTMLResponse)
async def edit_issue(request: Request, newsletter_id: int) -> Any:
    form = IssueForm.from_form(await request.form())
    return await run_in_threadpool(_edit_issue, request, newsletter_id, form)


def _edit_issue(request: Request, newsletter_id: int, form: IssueForm) -> Response:
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        clean, errors = _clean_issue(session, form, settings)
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
            changed = revise(session, newsletter_id, values)
        except NewsletterError as refusal:
            return _compose_page(
                request, session, user, form, newsletter, error=str(refusal), status_code=409
            )
        if changed:
            audit.record(
                session, user, "newsletter.edit", "newsletter", newsletter_id, {"fields": changed}
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
def preview_page(request: Request, newsletter_id: int, sample: int = 0) -> Any:
    """The issue as a kind of reader of its segment gets it: no address, no live link."""
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        samples = _samples(session, newsletter)
        index, locale = _chosen(samples, sample)
        mail = preview_sample(session, newsletter_id, locale, settings, utcnow(), MailRenderer())
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
def preview_html(request: Request, newsletter_id: int, sample: int = 0) -> Any:
    """The HTML part alone, framed by the preview page under a policy of its own."""
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        _, locale = _chosen(_samples(session, newsletter), sample)
        mail = preview_sample(session, newsletter_id, locale, settings, utcnow(), MailRenderer())
    return framed_mail(mail.html)


@router.post("/newsletters/{newsletter_id:int}/test", response_class=HTMLResponse)
async def test_issue(request: Request, newsletter_id: int) -> Any:
    addresses = _split(_text(await request.form(), "addresses"))
    return await run_in_threadpool(_test_issue, request, newsletter_id, addresses)


def _test_issue(request: Request, newsletter_id: int, addresses: list[str]) -> Response:
    """Promise the tests, commit, then send them in this request: editors wait for it."""
    settings = get_settings()
    database = get_database(settings)
    with database.session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        if not addresses:
            return _refused(request, session, user, newsletter, "test", "give an address")
        now = utcnow()
        try:
            ids = send_test(session, newsletter_id, addresses, settings, now, editor_id=user.id)
        except NewsletterError as error:
            return _refused(request, session, user, newsletter, "test", str(error))
        # The hourly cap counts these entries (alerts.newsletters.remaining_test_sends).
        audit.record(
            session,
            user,
            TEST_AUDIT_ACTION,
            "newsletter",
            newsletter_id,
            {"recipients": len(ids)},
            now=now,
        )
    report = send_deliveries(database, ids, default_mailer(settings), utcnow)
    return see_other(
        _issue_url(newsletter_id, "tested" if report.sent == len(ids) else "test_deferred")
    )


# --- schedule, send, cancel, recur, approve -----------------------------------------------


@router.post("/newsletters/{newsletter_id:int}/schedule", response_class=HTMLResponse)
async def schedule_issue(request: Request, newsletter_id: int) -> Any:
    form = await request.form()
    when = f"{_text(form, 'date')} {_text(form, 'time')}"
    return await run_in_threadpool(
        _schedule_issue, request, newsletter_id, when, _text(form, "timezone") or "UTC"
    )


def _schedule_issue(request: Request, newsletter_id: int, when: str, timezone: str) -> Response:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        try:
            at = local_moment(when, timezone)
            schedule(session, newsletter_id, at, timezone, utcnow(), actor=user)
        except NewsletterError as error:
            return _refused(request, session, user, newsletter, "schedule", str(error))
    return see_other(_issue_url(newsletter_id, "scheduled"))


@router.post("/newsletters/{newsletter_id:int}/send-now", response_class=HTMLResponse)
def send_issue_now(request: Request, newsletter_id: int) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        try:
            send_now(session, newsletter_id, utcnow(), actor=user)
        except NewsletterError as error:
            return _refused(request, session, user, newsletter, "schedule", str(error), 409)
    return see_other(f"{HOME_PATH}/newsletters/{newsletter_id}/progress?notice=sending")


@router.post("/newsletters/{newsletter_id:int}/cancel", response_class=HTMLResponse)
def cancel_issue(request: Request, newsletter_id: int) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        if not cancel(session, newsletter_id, actor=user):
            session.refresh(newsletter)
            message = f"issue {newsletter_id} is {newsletter.status.value}; too late to cancel"
            return _refused(request, session, user, newsletter, "cancel", message, 409)
    return see_other(_issue_url(newsletter_id, "cancelled"))


@router.post("/newsletters/{newsletter_id:int}/recur", response_class=HTMLResponse)
async def recur_issue(request: Request, newsletter_id: int) -> Any:
    form = await request.form()
    return await run_in_threadpool(
        _recur_issue,
        request,
        newsletter_id,
        " ".join(_text(form, "cron").split()),
        _text(form, "timezone") or "UTC",
        _text(form, "approval") == "true",
    )


def _recur_issue(
    request: Request, newsletter_id: int, cron: str, timezone: str, approval: bool
) -> Response:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
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
def approve_issue(request: Request, newsletter_id: int) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        if not approve(session, newsletter_id, actor=user):
            session.refresh(newsletter)
            message = f"issue {newsletter_id} is {newsletter.status.value}; nothing to approve"
            return _refused(request, session, user, newsletter, "approve", message, 409)
    return see_other(_issue_url(newsletter_id, "approved"))


def upcoming(newsletter: Newsletter, count: int, now: datetime) -> list[datetime]:
    """The next few occurrences of a recurring template, for editors to check the crontab."""
    if not newsletter.recurrence:
        return []
    moments: list[datetime] = []
    after = now
    for _ in range(count):
        after = next_occurrence(newsletter.recurrence, newsletter.timezone, after)
        moments.append(after)
    return moments


# --- progress -------------------------------------------------------------------------------


def _progress_json(newsletter: Newsletter, counts: dict[str, int]) -> dict[str, Any]:
    return {"id": newsletter.id, "status": newsletter.status.value, "counts": counts}


@router.get("/newsletters/{newsletter_id:int}/progress", response_class=HTMLResponse)
def progress_page(request: Request, newsletter_id: int) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        return render(
            request,
            "progress.html",
            {
                "user": user,
                "issue": newsletter,
                "tally": progress(session, newsletter_id),
                "refresh": PROGRESS_REFRESH_SECONDS if newsletter.status in LIVE_STATUSES else 0,
                "upcoming": upcoming(newsletter, 3, utcnow()),
            },
        )


@router.get("/newsletters/{newsletter_id:int}/progress.json")
def progress_json(request: Request, newsletter_id: int) -> Any:
    with get_database().session_scope() as session:
        editor_user(request, session)
        newsletter = _issue(session, newsletter_id)
        return JSONResponse(_progress_json(newsletter, progress(session, newsletter_id)))


# --- article search for picked sections -----------------------------------------------------


def search_articles(
    session: Session, text: str, settings: Settings, now: datetime
) -> tuple[list[dict[str, Any]], str | None]:
    """Recent articles whose title contains ``text``, then those its query matches.

    Returns the hits and, when ``text`` is not a valid query, why (titles still match).
    """
    text = text.strip()
    if not text:
        return [], None
    since = now - timedelta(days=SEARCH_DAYS)
    found: dict[int, Article] = {
        article.id: article
        for article in session.scalars(
            select(Article)
            .where(Article.title.contains(text, autoescape=True), Article.ingested_at >= since)
            .order_by(Article.ingested_at.desc(), Article.id.desc())
            .limit(SEARCH_LIMIT)
        )
    }
    problem = None
    try:
        hits = preview_interest(
            session,
            text,
            [],
            since=since,
            gazetteer=default_gazetteer(),
            settings=settings,
            limit=SEARCH_LIMIT,
        )
    except (QueryError, RegionNotFoundError) as error:
        hits, problem = [], str(error)
    missing = [hit.article_id for hit in hits if hit.article_id not in found]
    if missing:
        found.update(
            (article.id, article)
            for article in session.scalars(select(Article).where(Article.id.in_(missing)))
        )
    return [_article_json(article) for article in list(found.values())[:SEARCH_LIMIT]], problem


def _article_json(article: Article) -> dict[str, Any]:
    published = article.published_at or article.ingested_at
    return {
        "id": article.id,
        "title": article.title,
        "source": article.source_name or "",
        "published": published.strftime("%Y-%m-%d") if published else "",
    }


@router.get("/articles.json")
def articles_json(request: Request, q: str = "") -> Any:
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        editor_user(request, session)
        hits, problem = search_articles(session, q, settings, utcnow())
    return JSONResponse({"articles": hits, "query_error": problem})


# --- sources ----------------------------------------------------------------------------------


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
        name=_text(form, "name"),
        url=_text(form, "url"),
        poll_minutes=_text(form, "poll_minutes"),
        tags=_text(form, "tags"),
    )


def _source(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise HTTPException(status_code=404, detail="No such source.")
    return source


@router.get("/sources", response_class=HTMLResponse)
def sources(request: Request) -> Any:
    with get_database().session_scope() as session:
        return _sources_page(request, session, editor_user(request, session))


@router.post("/sources", response_class=HTMLResponse)
async def add_source(request: Request) -> Any:
    form = _source_form(await request.form())
    return await run_in_threadpool(_add_source, request, form)


def _add_source(request: Request, form: source_rules.SourceForm) -> Response:
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        user = editor_user(request, session)
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
def source_page(request: Request, source_id: int) -> Any:
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        source = _source(session, source_id)
        form = source_rules.SourceForm(
            source.name, source.url, str(source.poll_minutes), ", ".join(source.default_tags or [])
        )
        return _source_page(request, user, source, form)


@router.post("/sources/{source_id:int}", response_class=HTMLResponse)
async def edit_source(request: Request, source_id: int) -> Any:
    form = _source_form(await request.form())
    return await run_in_threadpool(_edit_source, request, source_id, form)


def _edit_source(request: Request, source_id: int, form: source_rules.SourceForm) -> Response:
    settings = get_settings()
    with get_database(settings).session_scope() as session:
        user = editor_user(request, session)
        source = _source(session, source_id)
        try:
            source_rules.update_source(session, user, source, form, settings, utcnow())
        except source_rules.SourceInputError as error:
            session.rollback()
            source = _source(session, source_id)
            return _source_page(request, user, source, form, {error.field: str(error)}, 422)
    return see_other(f"{HOME_PATH}/sources/{source_id}?notice=source_saved")


def _source_action(request: Request, source_id: int, action: str) -> RedirectResponse:
    now = utcnow()
    with get_database().session_scope() as session:
        user = editor_user(request, session)
        source = _source(session, source_id)
        if action == "poll":
            source_rules.poll_now(source, now)
            changed = True
        else:
            changed = source_rules.set_active(source, action == "resume", now)
        if changed:
            audit.record(session, user, f"source.{action}", "source", source.id)
    notices = {"poll": "polling", "pause": "paused", "resume": "resumed"}
    return see_other(f"{HOME_PATH}/sources?notice={notices[action]}")


@router.post("/sources/{source_id:int}/pause")
def pause_source(request: Request, source_id: int) -> Any:
    return _source_action(request, source_id, "pause")


@router.post("/sources/{source_id:int}/resume")
def resume_source(request: Request, source_id: int) -> Any:
    return _source_action(request, source_id, "resume")


@router.post("/sources/{source_id:int}/poll")
def poll_source_now(request: Request, source_id: int) -> Any:
    return _source_action(request, source_id, "poll")
