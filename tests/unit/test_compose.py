"""The key of a story's entry, which lets the process's renderer reuse its fragment."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.compose import EntryCache
from alerts.models import Article
from alerts.regions import default_gazetteer

EXPLANATIONS = [{"terms": [{"term": "flood", "field": "title"}], "regions": []}]


def story(title: str, hour: int) -> Article:
    return Article(
        id=1,
        title=title,
        url="https://news.example.org/1",
        source_name="Desk",
        body="Rain in the valley.",
        language="en",
        published_at=datetime(2026, 12, 1, hour, tzinfo=UTC),
        ingested_at=datetime(2026, 12, 1, hour, tzinfo=UTC),
    )


def key_of(article: Article, timezone: str = "UTC") -> str:
    entry = EntryCache(default_gazetteer()).get(article, EXPLANATIONS, timezone=timezone)
    return str(entry["key"])


def test_the_key_covers_what_the_entry_shows() -> None:
    first = key_of(story("Flood closes the road", 6))
    assert key_of(story("Flood closes the road", 6)) == first
    # Same id, other content: another database, or the feed updated the story.
    assert key_of(story("Flood closes the road again", 6)) != first
    assert key_of(story("Flood closes the road", 7)) != first
    assert key_of(story("Flood closes the road", 6), timezone="Asia/Tbilisi") != first
