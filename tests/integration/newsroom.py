"""A small newsroom for newsletter tests: readers in three places, three stories."""

from __future__ import annotations

from datetime import datetime, timedelta

from alerts.config import get_settings
from alerts.db import Database
from alerts.models import Article
from alerts.subscribers import NewSubscriber, add_subscriber

READERS = (
    ("tbilisi@example.org", ["Tbilisi"], "en"),
    ("sukhumi@example.org", ["Abkhazia"], "de"),
    ("moscow@example.org", ["Moscow"], "ru"),
)
STORIES = ("Tram line approved in Tbilisi", "Inguri crossing reopens", "Metro fares rise")


def seed_newsroom(database: Database, now: datetime) -> None:
    """Three confirmed readers, one pending, three articles of the last hours."""
    settings = get_settings()
    with database.session_scope() as session:
        for email, regions, language in READERS:
            add_subscriber(
                session,
                NewSubscriber(email=email, regions=regions, language=language, confirmed=True),
                settings,
                now,
            )
        add_subscriber(
            session, NewSubscriber(email="pending@example.org", query="x"), settings, now
        )
        for n, title in enumerate(STORIES):
            session.add(
                Article(
                    title=title,
                    body=f"{title}. More text follows.",
                    lead=f"{title}.",
                    fingerprint=f"newsroom-{n}",
                    title_key=f"newsroom-{n}",
                    language="en",
                    source_name="Desk",
                    ingested_at=now - timedelta(hours=n + 1),
                )
            )
