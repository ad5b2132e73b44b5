"""System status and the outbox page of the embedded setup."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from alerts.config import get_settings
from alerts.db import get_database
from alerts.health import queue_depths, service_checks
from alerts.metrics import QUEUE_DEPTH, render_all
from alerts.models import Article, Source, Subscriber
from alerts.web.templating import templates

RECENT_ARTICLES = 20
OUTBOX_PAGE_SIZE = 100

router = APIRouter()


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    """The process is up (a liveness probe: no dependency is asked)."""
    return "ok"


@router.get("/readyz")
def readyz() -> JSONResponse:
    """Database, broker and mail relay all answer (a readiness probe)."""
    checks = service_checks(get_settings())
    body = {check.name: {"ok": check.ok, "detail": check.detail} for check in checks}
    return JSONResponse(body, status_code=200 if all(c.ok for c in checks) else 503)


@router.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: every process on this machine, plus queue depths."""
    for queue, depth in queue_depths(get_settings()).items():
        QUEUE_DEPTH.labels(queue).set(depth)
    return Response(render_all(), media_type=CONTENT_TYPE_LATEST)


@router.get("/status", response_class=HTMLResponse)
def status(request: Request) -> Any:
    with get_database().session_scope() as session:
        context = {
            "article_count": session.scalar(select(func.count(Article.id))),
            "subscribers": dict(
                session.execute(
                    select(Subscriber.status, func.count(Subscriber.id)).group_by(Subscriber.status)
                ).all()
            ),
            "sources": session.scalars(select(Source).order_by(Source.name)).all(),
            "articles": session.scalars(
                select(Article).order_by(Article.id.desc()).limit(RECENT_ARTICLES)
            ).all(),
        }
    return templates.TemplateResponse(request, "status.html", context)


@router.get("/outbox", response_class=HTMLResponse)
def outbox(request: Request) -> Any:
    folder = get_settings().resolved_outbox_dir
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
    messages = [_summary(path) for path in files[:OUTBOX_PAGE_SIZE]]
    return templates.TemplateResponse(
        request, "outbox.html", {"messages": messages, "total": len(files)}
    )


@router.get("/outbox/{name}", response_class=PlainTextResponse)
def outbox_message(name: str) -> str:
    folder = get_settings().resolved_outbox_dir
    path = (folder / name).resolve()
    if path.parent != folder or path.suffix != ".eml" or not path.is_file():
        raise HTTPException(status_code=404, detail="no such message")
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
