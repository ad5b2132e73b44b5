"""Each supported format from the project's own fixtures, plus the edge cases."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.ingest import IngestLimits, ParseResult, SourceError, parse_document

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HTML_TAG = re.compile(r"<[A-Za-z/!][^>]*>")
EXPORT_BOILERPLATE = ("See Also", "correspondents", "Send your CV", "cookies", "Cookie Policy")


def parse_fixture(name: str, location: str | None = None, **kwargs: object) -> ParseResult:
    data = (FIXTURES / name).read_bytes()
    return parse_document(data, location=location or str(FIXTURES / name), **kwargs)  # type: ignore[arg-type]


def total(result: ParseResult) -> int:
    return len(result.articles) + len(result.errors)


def test_rss20_prefers_full_content_and_resolves_links() -> None:
    result = parse_fixture("rss20.xml", location="https://courier.example/feed.xml")
    assert result.format == "rss"
    assert result.feed_title == "Highland Courier"
    assert total(result) == 4
    ferry = result.articles[0]
    assert ferry.title == "Ferry service & new pier open in Lakeside"
    assert ferry.url == "https://courier.example/news/ferry-service-opens"
    assert ferry.guid == "courier-1001"
    assert ferry.published == datetime(2024, 5, 14, 7, 30, tzinfo=UTC)
    assert ferry.body.startswith("The long-awaited ferry")
    assert "teaser" not in ferry.body
    assert "trackVisit" not in ferry.body
    assert "display" not in ferry.body
    assert ferry.body.count("\n\n") == 3
    assert ferry.tags == ["Transport", "Lakeside"]
    assert ferry.language == "en"
    assert ferry.author == "Nora Falk"
    assert ferry.source == "Highland Courier"


def test_rss20_entries_without_link_title_or_date() -> None:
    result = parse_fixture("rss20.xml", location="https://courier.example/feed.xml")
    _, roof, untitled = result.articles
    assert roof.url is None
    assert roof.guid is None
    assert roof.published is None  # invalid date kept the entry
    assert untitled.title == ""
    assert untitled.body == "An item that carries only a description and no headline at all."
    [error] = result.errors
    assert error.entry == "courier-empty-1004"
    assert error.reason == "no title and no text"


def test_rss10_in_latin1() -> None:
    result = parse_fixture("rss10.xml")
    assert result.format == "rss"
    assert [a.title for a in result.articles] == [
        "Neue Brücke über die Ache freigegeben",
        "Schulgarten gewinnt Preis",
    ]
    first = result.articles[0]
    assert first.language == "de"
    assert first.tags == ["Verkehr"]
    assert first.published == datetime(2024, 4, 2, 5, 15, tzinfo=UTC)
    assert "Fußgänger" in first.body


def test_atom_xml_base_html_title_and_entry_language() -> None:
    result = parse_fixture("atom.xml")
    assert result.format == "atom"
    assert result.feed_title == "Steppe & Mountain Notes"
    herders, road = result.articles
    assert herders.title == "Herders move early to summer pastures"
    assert herders.url == "https://steppe.example/blog/2024/06/herders-move-early"
    assert herders.published == datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
    assert herders.body.split("\n\n")[0].startswith("A warm spring")
    assert "Short version" not in herders.body
    assert herders.author == "Aigerim Test"
    assert road.language == "ru"
    assert road.published == datetime(2024, 5, 20, 10, 0, tzinfo=UTC)


def test_json_feed_items_and_bad_items() -> None:
    result = parse_fixture("feed.json", location="https://delta.example/feed.json")
    assert result.format == "jsonfeed"
    assert result.feed_title == "Delta Daily"
    assert total(result) == 4
    levee, market = result.articles
    assert levee.title == "Levee inspection finds minor cracks"
    assert levee.url == "https://delta.example/stories/levee-inspection"
    assert levee.body == (
        "Engineers walked the whole levee on Monday.\n\n"
        "They marked four places for repair before autumn."
    )
    assert levee.published == datetime(2024, 7, 8, 21, 45, tzinfo=UTC)
    assert levee.tags == ["Infrastructure", "Delta"]
    assert levee.author == "Delta Desk"
    assert market.guid == "2"
    assert market.published is None
    assert [e.entry for e in result.errors] == ["item #3", "item #4"]
    assert "tags" in result.errors[0].reason


def test_jsonl_bad_lines_name_their_line_number() -> None:
    result = parse_fixture("articles.jsonl")
    assert result.format == "jsonl"
    assert total(result) == 5  # the blank line is not an entry
    harvest, cider = result.articles
    assert harvest.guid == "a-1"
    assert harvest.source == "Orchard Weekly"
    assert harvest.tags == ["Farming", "Economy"]
    assert harvest.published == datetime(2024, 8, 20, 6, 0, tzinfo=UTC)
    assert harvest.body.split("\n\n")[0] == "Growers began picking apples a week ahead of schedule."
    assert cider.published is None
    reasons = {e.entry: e.reason for e in result.errors}
    assert "invalid JSON" in reasons["line 3"]
    assert "line 3" in reasons["line 3"]
    assert "tags" in reasons["line 4"]
    assert reasons["a-5"] == "no title and no text"


def test_json_array_of_articles() -> None:
    records = [{"id": "x1", "title": "Only a headline"}, {"id": "x2", "title": 5}]
    result = parse_document(json.dumps(records).encode())
    assert result.format == "json"
    assert [a.guid for a in result.articles] == ["x1"]
    assert result.errors[0].entry == "item #2"


def test_html_page_drops_site_chrome() -> None:
    result = parse_fixture("page.html", location="https://bergbote.example/region/x?utm=feed")
    assert result.format == "html"
    [page] = result.articles
    assert page.title == "Seilbahn fährt wieder"
    assert page.url == "https://bergbote.example/region/seilbahn-faehrt-wieder"
    assert page.language == "de"
    assert page.published == datetime(2024, 9, 12, 3, 30, tzinfo=UTC)
    assert page.body.startswith("Nach einer dreimonatigen Sanierung")
    assert page.body.count("\n\n") == 2
    for chrome in ("Startseite", "Meistgelesen", "Impressum", "dataLayer", "font-family"):
        assert chrome not in page.body


def test_text_export_headline_tags_and_no_boilerplate() -> None:
    result = parse_fixture("export.txt")
    assert result.format == "text"
    [article] = result.articles
    assert article.title == "Volunteers rebuild flooded library in the mountain town of Dilijan"
    assert article.tags == ["News", "Armenia", "Dilijan"]
    assert article.body.split("\n\n")[0] == "Library reopens after spring flood"
    assert article.body.endswith("before the autumn rains begin.")
    for phrase in EXPORT_BOILERPLATE:
        assert phrase not in article.body
    assert article.language == "en"


def test_text_export_boilerplate_without_see_also_is_dropped() -> None:
    text = (FIXTURES / "export.txt").read_text(encoding="utf-8").replace("See Also\n", "")
    [article] = parse_document(text.encode()).articles
    assert article.body.endswith("before the autumn rains begin.")
    for phrase in EXPORT_BOILERPLATE:
        assert phrase not in article.body


def test_text_without_tag_line_is_headline_and_body() -> None:
    data = b"Snow closes the pass\n\nThe road will stay shut until Thursday.\n"
    [article] = parse_document(data).articles
    assert article.title == "Snow closes the pass"
    assert article.tags == []
    assert article.body == "The road will stay shut until Thursday."


def test_empty_input_is_a_source_error() -> None:
    for data in (b"", b"   \n\t ", b"\xef\xbb\xbf"):
        with pytest.raises(SourceError, match="empty"):
            parse_document(data)


def test_binary_garbage_is_a_source_error() -> None:
    garbage = bytes(range(256)) * 40 + os.urandom(4096)
    with pytest.raises(SourceError, match="not a feed, JSON, HTML page or text export") as info:
        parse_document(garbage)
    assert "\n" not in str(info.value)


def test_xml_that_is_not_a_feed_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="root element <inventory>"):
        parse_document(b"<?xml version='1.0'?><inventory><box id='1'/></inventory>")


def test_oversized_document_is_rejected_before_parsing() -> None:
    limits = IngestLimits(max_source_bytes=1024)
    with pytest.raises(SourceError, match="max_source_bytes"):
        parse_document(b"<rss>" + b" " * 2000 + b"</rss>", limits=limits)


def test_oversized_article_is_an_entry_error_not_truncated() -> None:
    limits = IngestLimits(max_body_chars=100, max_title_chars=30)
    records = [
        {"id": "long-body", "title": "Fine", "body": "word " * 100},
        {"id": "long-title", "title": "T" * 31, "body": "short"},
        {"id": "ok", "title": "Fine", "body": "short"},
    ]
    data = "\n".join(json.dumps(r) for r in records).encode()
    result = parse_document(data, location="batch.jsonl", limits=limits)
    assert [a.guid for a in result.articles] == ["ok"]
    reasons = {e.entry: e.reason for e in result.errors}
    assert "max_body_chars" in reasons["long-body"]
    assert "max_title_chars" in reasons["long-title"]


def test_entries_over_the_entry_limit_are_reported() -> None:
    items = "".join(f"<item><title>Story {n}</title></item>" for n in range(5))
    data = f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    result = parse_document(data, limits=IngestLimits(max_entries=3))
    assert len(result.articles) == 3
    assert len(result.errors) == 2
    assert all("over the limit of 3 entries" in e.reason for e in result.errors)


def test_fifty_megabyte_input_is_refused_with_the_limit() -> None:
    fifty_mb = 50 * 1024 * 1024
    data = b"A" * fifty_mb
    with pytest.raises(SourceError, match=r"limit of \d+ bytes"):
        parse_document(data)


def test_published_dates_are_aware_utc() -> None:
    lines = [
        {"title": "Naive", "published": "2024-01-02T03:04:05"},
        {"title": "Offset", "published": "2024-01-02T03:04:05+03:00"},
        {"title": "Zulu", "published": "2024-01-02T03:04:05Z"},
        {"title": "Nonsense", "published": "2024-13-45"},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    dates = [a.published for a in parse_document(data).articles]
    assert dates == [
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, 0, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        None,
    ]


def test_titles_never_keep_html() -> None:
    data = (
        b'<rss version="2.0"><channel><item><title>&lt;span class="x"&gt;Vote&lt;/span&gt;'
        b" count &lt;i&gt;delayed&lt;/i&gt;</title></item></channel></rss>"
    )
    [article] = parse_document(data).articles
    assert article.title == "Vote count delayed"
    assert not HTML_TAG.search(article.title)


def test_utf16_feed_with_bom() -> None:
    feed = (
        '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel><item>'
        "<title>Überschwemmung im Tal</title></item></channel></rss>"
    )
    [article] = parse_document(feed.encode("utf-16")).articles
    assert article.title == "Überschwemmung im Tal"
