"""The web app. Until the full site lands it shows system status and the outbox."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from alerts.config import TEMPLATES_DIR, get_settings
from alerts.db import get_database, utcnow
from alerts.delivery.outbound import UNSUBSCRIBE_PURPOSE
from alerts.models import Article, Source, Subscriber
from alerts.subscribers import unsubscribe
from alerts.tokens import InvalidToken, verify_token

RECENT_ARTICLES = 20
OUTBOX_PAGE_SIZE = 100


def create_app() -> FastAPI:
    app = FastAPI(title="alerts", docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=TEMPLATES_DIR / "web")

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
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

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_page(request: Request, token: str) -> Any:
        """A page with a button: link scanners that fetch URLs change nothing."""
        subscriber_id = _subscriber_from(token, UNSUBSCRIBE_PURPOSE)
        return templates.TemplateResponse(
            request, "unsubscribe.html", {"token": token, "done": False, "known": subscriber_id}
        )

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_now(request: Request, token: str) -> Any:
        """RFC 8058 one-click: mail clients POST ``List-Unsubscribe=One-Click`` here."""
        subscriber_id = _subscriber_from(token, UNSUBSCRIBE_PURPOSE)
        with get_database().session_scope() as session:
            unsubscribe(session, subscriber_id, utcnow())
        return templates.TemplateResponse(
            request, "unsubscribe.html", {"token": token, "done": True, "known": subscriber_id}
        )

    @app.get("/outbox", response_class=HTMLResponse)
    def outbox(request: Request) -> Any:
        folder = get_settings().resolved_outbox_dir
        files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
        messages = [_summary(path) for path in files[:OUTBOX_PAGE_SIZE]]
        return templates.TemplateResponse(
            request, "outbox.html", {"messages": messages, "total": len(files)}
        )

    @app.get("/outbox/{name}", response_class=PlainTextResponse)
    def outbox_message(name: str) -> str:
        folder = get_settings().resolved_outbox_dir
        path = (folder / name).resolve()
        if path.parent != folder or path.suffix != ".eml" or not path.is_file():
            raise HTTPException(status_code=404, detail="no such message")
        return path.read_text(encoding="utf-8", errors="replace")

    return app


def _subscriber_from(token: str, purpose: str) -> int:
    try:
        subject = verify_token(get_settings().resolved_secret_key, purpose, token, now=utcnow())
    except InvalidToken as error:
        raise HTTPException(status_code=400, detail=f"This link is not valid: {error}.") from error
    return int(subject)


def _summary(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        headers = BytesParser(policy=policy.default).parse(handle, headersonly=True)
    return {
        "name": path.name,
        "to": str(headers.get("To", "")),
        "subject": str(headers.get("Subject", "")),
        "date": str(headers.get("Date", "")),
    }
