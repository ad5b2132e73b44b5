"""System status and the outbox page of the embedded setup."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import func, select

from alerts.config import get_settings
from alerts.db import get_database
from alerts.models import Article, Source, Subscriber
from alerts.web.templating import templates

RECENT_ARTICLES = 20
OUTBOX_PAGE_SIZE = 100

router = APIRouter()


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@router.get("/status", response_class=HTMLResponse)
def status(request: Request) -> Any:
    with get_database().session_scope() as session:
        context = {
            "article_count": session.scalar(select(func.count(Article.id))),
            "subscribers": dict(
                session.execute(
                    select(Subscriber.status, func.count(Subscriber.id)).group_by(
                        Subscriber.status
                    )
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
