"""The article picker's search, as JSON for the compose form's script."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from alerts.articles import search_articles
from alerts.config import get_settings
from alerts.db import utcnow
from alerts.models import Article
from alerts.web.console import EditorDep
from alerts.web.dependencies import SessionDep
from alerts.web.editor.common import editor_router

router = editor_router()


def _article_json(article: Article) -> dict[str, Any]:
    published = article.published_at or article.ingested_at
    return {
        "id": article.id,
        "title": article.title,
        "source": article.source_name or "",
        "published": published.strftime("%Y-%m-%d") if published else "",
    }


@router.get("/articles.json")
def articles_json(session: SessionDep, user: EditorDep, q: str = "") -> Any:
    found = search_articles(session, q, get_settings(), utcnow())
    return JSONResponse(
        {"articles": [_article_json(a) for a in found.articles], "query_error": found.query_error}
    )
