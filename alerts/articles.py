"""Article search for the editors' picker: recent titles first, then query matches.

Editors build a "picked" section by searching what was ingested lately; the
search is read-only and bounded (``SEARCH_DAYS``, ``SEARCH_LIMIT``) so a broad
word cannot make the page read the whole archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.config import Settings
from alerts.matching import QueryError, UnknownRegionError
from alerts.matching.service import preview_interest
from alerts.models import Article
from alerts.regions import default_gazetteer

# How far back and how many results the picker offers.
SEARCH_DAYS = 30
SEARCH_LIMIT = 20


@dataclass(frozen=True)
class ArticleSearch:
    """The hits, and why ``text`` is not a valid query when it is not (titles still match)."""

    articles: list[Article]
    query_error: str | None


def search_articles(
    session: Session, text: str, settings: Settings, now: datetime
) -> ArticleSearch:
    """Recent articles whose title contains ``text``, then those its query matches."""
    text = text.strip()
    if not text:
        return ArticleSearch([], None)
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
    except (QueryError, UnknownRegionError) as error:
        hits, problem = [], str(error)
    missing = [hit.article_id for hit in hits if hit.article_id not in found]
    if missing:
        found.update(
            (article.id, article)
            for article in session.scalars(select(Article).where(Article.id.in_(missing)))
        )
    return ArticleSearch(list(found.values())[:SEARCH_LIMIT], problem)
