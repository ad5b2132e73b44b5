"""Every real-world feed in the shared data set ingests without a crash, nothing dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import feedparser
import pytest

from alerts.ingest import SourceError, parse_document

FEEDS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "feeds"
FEED_FILES = sorted(p for p in FEEDS.rglob("*") if p.is_file()) if FEEDS.exists() else []
HTML_TAG = re.compile(r"<[A-Za-z/!][^>]*>")


def _entries_seen_by_reference_parsers(data: bytes, path: Path) -> int:
    """How many entries feedparser (or json, for JSON Feed) finds in the file."""
    if path.suffix == ".json":
        return len(json.loads(data)["items"])
    return len(feedparser.parse(data).entries)


@pytest.mark.skipif(not FEEDS.exists(), reason=f"shared feed corpus not found at {FEEDS}")
@pytest.mark.parametrize("path", FEED_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_feed_accounts_for_every_entry(path: Path) -> None:
    data = path.read_bytes()
    expected = _entries_seen_by_reference_parsers(data, path)
    if expected == 0:
        # Nothing to account for: an empty result and a SourceError are both fine.
        try:
            result = parse_document(data, location=str(path))
        except SourceError as exc:
            reason = str(exc)
            assert reason
            assert "\n" not in reason
            return
    else:
        result = parse_document(data, location=str(path))
    assert len(result.articles) + len(result.errors) == expected
    for article in result.articles:
        assert not HTML_TAG.search(article.title), article.title
        assert article.title or article.body
        assert article.published is None or article.published.utcoffset() is not None
    for error in result.errors:
        assert error.entry
        assert error.reason


@pytest.mark.skipif(not FEEDS.exists(), reason=f"shared feed corpus not found at {FEEDS}")
def test_undeclared_koi8r_is_decoded_as_cyrillic() -> None:
    result = parse_document((FEEDS / "illformed" / "koi8r.xml").read_bytes())
    assert len(result.articles) == 1
    assert re.search("[а-яА-Я]", result.articles[0].title)
    assert result.warnings, "a bozo feed must not be parsed silently"


SAMPLE = FEEDS.parent.parent / "samples" / "caucasus-watch-article.txt"
SAMPLE_BOILERPLATE = ("See Also", "cookies", "Send CV", "cover letter", "@")


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"outlet sample not found at {SAMPLE}")
@pytest.mark.parametrize("drop_see_also", [False, True])
def test_outlet_sample_body_has_no_site_boilerplate(drop_see_also: bool) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    if drop_see_also:
        text = re.sub(r"(?im)^\s*see also\s*$", "", text)
    [article] = parse_document(text.encode("utf-8")).articles
    assert article.tags == ["News", "Georgia", "Tskhinvali"]
    assert article.language == "en"
    for phrase in SAMPLE_BOILERPLATE:
        assert phrase not in article.body
