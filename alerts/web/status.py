"""System status, health probes, metrics, and the outbox of the embedded setup.

What the public may see is deliberately little: ``/healthz``, a bare ok/503
from ``/readyz``, and ``/status`` without subscriber counts or fetch errors
(an error text such as "Connection refused" would make the page a port
scanner). The details, ``/metrics`` and the outbox need an operator: a
signed-in admin (the console's own check) or, for machines such as
Prometheus, the bearer token ``ALERTS_METRICS_TOKEN``.

The outbox holds every mail with its readers' signed links, so it is for
signed-in admins only, and only while no SMTP relay is set (a development
aid, never a production page).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.config import Settings, get_settings
from alerts.db import get_database
from alerts.health import queue_depths, service_checks
from alerts.metrics import QUEUE_DEPTH, render_all
from alerts.models import Article, Source, Subscriber
from alerts.newsletters import LINKS_DISABLED_PATH
from alerts.web.console import admin_user, framed_mail
from alerts.web.dependencies import SessionDep
from alerts.web.templating import templates

RECENT_ARTICLES = 20
OUTBOX_PAGE_SIZE = 100
# What the outbox writes (<time>-<hash>.eml) and what a person may drop there by
# hand; anything else (a NUL byte, "..", a slash) is no message of ours: 404.
OUTBOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.eml")
# Links in a mail's text part, made clickable on the outbox page.
TEXT_LINK = re.compile(r"https?://[^\s<>\"']+")
# Shown on the public status page instead of the fetch error itself.
PUBLIC_SOURCE_ERROR = "could not be read"

router = APIRouter()


# --- who may see the details ------------------------------------------------------------


def bearer_token_matches(request: Request, settings: Settings) -> bool:
    """``Authorization: Bearer <ALERTS_METRICS_TOKEN>``; never true while the token is unset."""
    expected = settings.metrics_token
    if not expected:
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), expected.encode()
    )


def operator_access(request: Request, session: Session, settings: Settings) -> bool:
    """A machine with the metrics token, or a signed-in admin (the console's own check)."""
    if bearer_token_matches(request, settings):
        return True
    try:
        admin_user(request, session)
    except HTTPException:
        return False
    return True


def _has_operator_access(request: Request, settings: Settings) -> bool:
    """For the probes, which take no ``SessionDep``: a scrape with the token, or a
    probe of a process whose database is down, must not need the database."""
    if bearer_token_matches(request, settings):
        return True  # no database needed for a scrape
    with get_database(settings).session_scope() as session:
        return operator_access(request, session, settings)


# --- probes and metrics -----------------------------------------------------------------


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    """The process is up (a liveness probe: no dependency is asked)."""
    return "ok"


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Database, broker and mail relay all answer (a readiness probe).

    Anyone gets the verdict (200 or 503); only an operator gets which service
    failed and why, since the details name hosts, folders and error texts.
    """
    settings = get_settings()
    checks = service_checks(settings)
    status_code = 200 if all(c.ok for c in checks) else 503
    if not _has_operator_access(request, settings):
        return JSONResponse({"status": "ok" if status_code == 200 else "unavailable"}, status_code)
    body = {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}
    return JSONResponse(body, status_code=status_code)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format: every process on this machine, plus queue depths."""
    settings = get_settings()
    if not _has_operator_access(request, settings):
        return PlainTextResponse(
            "Send the metrics token: Authorization: Bearer <ALERTS_METRICS_TOKEN>.",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    for queue, depth in queue_depths(settings).items():
        QUEUE_DEPTH.labels(queue).set(depth)
    return Response(render_all(), media_type=CONTENT_TYPE_LATEST)


# --- the status page --------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRow:
    name: str
    active: bool
    poll_minutes: int
    last_polled_at: Any
    result: str
    failed: bool


def _source_row(source: Source, detailed: bool) -> SourceRow:
    failed = bool(source.last_error)
    if failed:
        result = source.last_error if detailed else PUBLIC_SOURCE_ERROR
    else:
        result = source.last_status or ""
    return SourceRow(
        source.name, source.active, source.poll_minutes, source.last_polled_at, result or "", failed
    )


@router.get("/status", response_class=HTMLResponse)
def status(request: Request, session: SessionDep) -> Any:
    """Sources and the latest articles; counts and fetch errors for operators only."""
    settings = get_settings()
    detailed = operator_access(request, session, settings)
    subscribers = (
        dict(
            session.execute(
                select(Subscriber.status, func.count(Subscriber.id)).group_by(Subscriber.status)
            ).all()
        )
        if detailed
        else None
    )
    context = {
        "detailed": detailed,
        "article_count": session.scalar(select(func.count(Article.id))),
        "subscribers": subscribers,
        "sources": [
            _source_row(source, detailed)
            for source in session.scalars(select(Source).order_by(Source.name))
        ],
        "articles": session.scalars(
            select(Article).order_by(Article.id.desc()).limit(RECENT_ARTICLES)
        ).all(),
    }
    return templates.TemplateResponse(request, "status.html", context)


@router.api_route(LINKS_DISABLED_PATH, methods=["GET", "POST"], response_class=HTMLResponse)
def links_disabled(request: Request) -> Any:
    """Where every link of a preview or test mail goes: it does nothing, and says so.

    POST too, because a mail client's one-click unsubscribe posts to the
    List-Unsubscribe address; nothing changes either way.
    """
    return templates.TemplateResponse(request, "links_disabled.html", {})


# --- the outbox -------------------------------------------------------------------------


def _outbox_folder(request: Request, session: SessionDep) -> Path:
    """The outbox folder, once the caller is known to be an admin and the outbox is on.

    Off (404) with an SMTP relay set, whoever asks; otherwise strangers are sent
    to the login page and editors refused, exactly as on the console. (Not
    ``AdminDep``: the 404 comes first.)
    """
    settings = get_settings()
    if not settings.outbox_enabled:
        raise HTTPException(status_code=404, detail="Not Found")
    admin_user(request, session)
    return settings.resolved_outbox_dir


OutboxDep = Annotated[Path, Depends(_outbox_folder)]


def _message_path(folder: Path, name: str) -> Path:
    """The file of one outbox message; 404 for any name the outbox would not write."""
    if not OUTBOX_NAME.fullmatch(name):
        raise HTTPException(status_code=404, detail="no such message")
    path = folder / name  # the name has no separator or "..": it stays in the folder
    if not path.is_file():
        raise HTTPException(status_code=404, detail="no such message")
    return path


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage
    return message


def _part(message: EmailMessage, subtype: str) -> str | None:
    """One body part, its transfer encoding (quoted-printable, base64) undone."""
    body = message.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_subtype() != subtype:
        return None
    content: str = body.get_content()
    return content


@dataclass(frozen=True)
class TextPiece:
    """A run of the text part: plain text, or a link (``href`` set)."""

    text: str
    href: str | None = None


def linkified(text: str) -> list[TextPiece]:
    """The text part cut into text and http(s) links, for the template to escape."""
    pieces: list[TextPiece] = []
    position = 0
    for found in TEXT_LINK.finditer(text):
        url = found.group().rstrip(".,;:!?)")
        if found.start() > position:
            pieces.append(TextPiece(text[position : found.start()]))
        pieces.append(TextPiece(url, url))
        position = found.start() + len(url)
    if position < len(text):
        pieces.append(TextPiece(text[position:]))
    return pieces


@router.get("/outbox", response_class=HTMLResponse)
def outbox(request: Request, folder: OutboxDep) -> Any:
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
    messages = [_summary(path) for path in files[:OUTBOX_PAGE_SIZE]]
    return templates.TemplateResponse(
        request, "outbox.html", {"messages": messages, "total": len(files)}
    )


@router.get("/outbox/{name}", response_class=HTMLResponse)
def outbox_message(request: Request, folder: OutboxDep, name: str) -> Any:
    """One mail as its reader sees it: headers, the HTML part framed, the text part."""
    path = _message_path(folder, name)
    message = _parse(path)
    text = _part(message, "plain")
    context = {
        "name": path.name,
        "headers": {
            header: str(message.get(header, ""))
            for header in ("From", "To", "Subject", "Date", "List-Unsubscribe")
        },
        "has_html": _part(message, "html") is not None,
        "text": linkified(text) if text is not None else None,
    }
    return templates.TemplateResponse(request, "outbox_message.html", context)


@router.get("/outbox/{name}/html")
def outbox_message_html(folder: OutboxDep, name: str) -> Response:
    """The HTML part alone, for the sandboxed frame of the message page."""
    html = _part(_parse(_message_path(folder, name)), "html")
    if html is None:
        raise HTTPException(status_code=404, detail="this message has no HTML part")
    return framed_mail(html)


@router.get("/outbox/{name}/raw", response_class=PlainTextResponse)
def outbox_message_raw(folder: OutboxDep, name: str) -> str:
    """The message source, as the relay would have received it."""
    path = _message_path(folder, name)
    return path.read_text(encoding="utf-8", errors="replace")


def _summary(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        headers = BytesParser(policy=policy.default).parse(handle, headersonly=True)
    return {
        "name": path.name,
        "to": str(headers.get("To", "")),
        "subject": str(headers.get("Subject", "")),
        "date": str(headers.get("Date", "")),
    }
