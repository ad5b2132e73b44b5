"""Format detection and one parser per source format.

``parse_document`` sniffs the bytes (content type and file extension only
break ties), hands them to the matching parser and returns every entry either
as a ``ParsedArticle`` or as an ``EntryError`` with a reason, so the caller can
report exactly what happened to each entry of a source.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from alerts.errors import AlertsError
from alerts.ingest.limits import IngestLimits
from alerts.ingest.text import (
    PARAGRAPH_SEPARATOR,
    body_to_text,
    collapse_whitespace,
    detect_language,
    html_to_line,
    html_to_text,
    plain_text_paragraphs,
)
from alerts.text.analysis import normalise_language

FORMAT_RSS = "rss"
FORMAT_ATOM = "atom"
FORMAT_JSON_FEED = "jsonfeed"
FORMAT_JSONL = "jsonl"
FORMAT_JSON_ARRAY = "json"
FORMAT_HTML = "html"
FORMAT_TEXT = "text"

UNRECOGNISED = "not a feed, JSON, HTML page or text export"

# Enough of the document to find its root element past an XML prolog and comments.
SNIFF_BYTES = 8192
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xff\xfe", b"\xfe\xff")
XML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
XML_PROLOG = re.compile(r"<\?.*?(?:\?>|$)", re.DOTALL)
ROOT_ELEMENT = re.compile(r"<([A-Za-z][\w:.-]*)")
HTML_DOCTYPE = re.compile(r"<!doctype\s+html", re.IGNORECASE)
FEED_ROOTS = frozenset({"rss", "rdf:rdf", "rdf", "feed", "channel"})
HTML_ROOTS = frozenset(
    {
        "html",
        "head",
        "body",
        "div",
        "p",
        "article",
        "section",
        "main",
        "meta",
        "title",
        "header",
        "h1",
        "h2",
        "table",
        "span",
        "a",
        "ul",
    }
)

JSONL_CONTENT_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl"}
)
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})

# Control characters other than tab, newline, carriage return and form feed
# never occur in a text export; a share above this means the bytes are binary.
MAX_CONTROL_CHAR_SHARE = 0.01
ALLOWED_CONTROL_CHARS = frozenset("\t\n\r\f")

MAX_LABEL_CHARS = 120
MAX_REASON_CHARS = 300

# The outlet's plain-text export: "| Section, Region" line and the end-of-article marker.
TAG_LINE_PREFIX = "|"
SEE_ALSO_LINE = re.compile(r"^\s*see also\s*:?\s*$", re.IGNORECASE)
# Site boilerplate that the export appends after the article; matched per paragraph.
TRAILING_BOILERPLATE = (
    # cookie consent notices
    re.compile(r"\bcookies?\b.*\b(?:accept|consent|policy|disable|use of)\b", re.IGNORECASE),
    re.compile(r"\b(?:uses|use) cookies\b", re.IGNORECASE),
    # recruiting notices
    re.compile(r"\bsend (?:your |a |us )?(?:cv|c\.v\.|resume|résumé)\b", re.IGNORECASE),
    re.compile(r"\bcover letter\b", re.IGNORECASE),
    re.compile(
        r"\b(?:we are hiring|seeks? (?:local |freelance )?(?:specialists|"
        r"correspondents|journalists|authors|contributors))\b",
        re.IGNORECASE,
    ),
)
# A long paragraph that merely mentions cookies is article text, not a notice.
MAX_BOILERPLATE_CHARS = 600

JSONL_STRING_FIELDS = ("title", "body", "url", "published", "language", "source", "author")
JSON_FEED_STRING_FIELDS = (
    "url",
    "external_url",
    "title",
    "content_html",
    "content_text",
    "summary",
    "date_published",
    "date_modified",
    "language",
)


@dataclass
class ParsedArticle:
    """One article, reduced to plain text and normalised metadata."""

    guid: str | None
    url: str | None
    title: str
    body: str
    published: datetime | None
    language: str | None
    tags: list[str]
    source: str | None
    author: str | None


@dataclass
class EntryError:
    """An entry that could not become an article; ``entry`` is a short human label."""

    entry: str
    reason: str


@dataclass
class ParseResult:
    """Everything found in one document; ``warnings`` holds document-level oddities."""

    format: str
    articles: list[ParsedArticle]
    errors: list[EntryError]
    feed_title: str | None
    warnings: list[str] = field(default_factory=list)


class SourceError(AlertsError):
    """The source as a whole cannot be read or understood; str() is a one-line reason."""


class InvalidEntryError(AlertsError):
    """Raised while building one entry; becomes an EntryError for that entry only."""


@dataclass
class _Draft:
    """Entry fields before validation against the limits."""

    guid: str | None = None
    url: str | None = None
    title: str = ""
    body: str = ""
    published: datetime | None = None
    language: str | None = None
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    author: str | None = None


class _Collector:
    """Counts every entry exactly once, as an article or as an error."""

    def __init__(self, limits: IngestLimits) -> None:
        self.limits = limits
        self.articles: list[ParsedArticle] = []
        self.errors: list[EntryError] = []
        self.seen = 0

    def add(self, fallback_label: str, build: Callable[[], _Draft]) -> None:
        """Build one entry and file it; build() may raise InvalidEntryError."""
        self.seen += 1
        if self.seen > self.limits.max_entries:
            self.error(
                fallback_label,
                f"over the limit of {self.limits.max_entries} entries per source (max_entries)",
            )
            return
        try:
            draft = build()
        except InvalidEntryError as problem:
            self.error(fallback_label, str(problem))
            return
        label = _label(draft.guid or draft.url or draft.title or fallback_label)
        reason = self._rejection(draft)
        if reason:
            self.error(label, reason)
            return
        language = draft.language or detect_language(draft.title + PARAGRAPH_SEPARATOR + draft.body)
        self.articles.append(
            ParsedArticle(
                guid=draft.guid,
                url=draft.url,
                title=draft.title,
                body=draft.body,
                published=draft.published,
                language=language,
                tags=_unique(draft.tags),
                source=draft.source,
                author=draft.author,
            )
        )

    def error(self, label: str, reason: str) -> None:
        self.errors.append(EntryError(entry=_label(label), reason=_one_line(reason)))

    def _rejection(self, draft: _Draft) -> str | None:
        if not draft.title and not draft.body:
            return "no title and no text"
        if len(draft.title) > self.limits.max_title_chars:
            return (
                f"title is {len(draft.title)} characters, over the limit of "
                f"{self.limits.max_title_chars} (max_title_chars)"
            )
        if len(draft.body) > self.limits.max_body_chars:
            return (
                f"body is {len(draft.body)} characters, over the limit of "
                f"{self.limits.max_body_chars} (max_body_chars)"
            )
        return None


def parse_document(
    data: bytes,
    *,
    location: str | None = None,
    content_type: str | None = None,
    limits: IngestLimits = IngestLimits(),  # noqa: B008 - frozen dataclass, safe as a default
) -> ParseResult:
    """Parse one source document of any supported format.

    ``location`` (file path or URL) resolves relative links and, like
    ``content_type``, hints at the format when the bytes alone are ambiguous.
    Raises SourceError when the document as a whole is unusable.
    """
    if len(data) > limits.max_source_bytes:
        raise SourceError(
            f"source is {len(data)} bytes, over the limit of {limits.max_source_bytes} bytes "
            "(max_source_bytes)"
        )
    head = _sniff_text(data)
    if not head.strip():
        raise SourceError("empty document")
    media_type = _media_type(content_type)
    extension = _extension(location)
    first = head.lstrip()[0]
    if first == "<":
        return _parse_markup(data, head, location, content_type, limits)
    if first in "{[":
        jsonl_hint = media_type in JSONL_CONTENT_TYPES or extension in JSONL_EXTENSIONS
        return _parse_json_family(data, location, limits, jsonl_hint=jsonl_hint)
    text = _decode_text(data)
    html_hint = media_type in HTML_CONTENT_TYPES or extension in HTML_EXTENSIONS
    if html_hint and "<" in text:
        return _parse_html_page(data, location, content_type, limits)
    return _parse_text_export(text, location, limits)


# --- detection helpers -------------------------------------------------------


def _sniff_text(data: bytes) -> str:
    """The start of the document as ASCII-ish text, good enough to see its first markup.

    Dropping NUL bytes makes UTF-16 and UTF-32 markup readable without knowing
    the byte order; only the first characters' identity matters here.
    """
    head = data[:SNIFF_BYTES]
    for bom in BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.replace(b"\x00", b"").decode("latin-1")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _extension(location: str | None) -> str:
    if not location:
        return ""
    path = urlsplit(location).path if _is_web_url(location) else location
    return PurePosixPath(path).suffix.lower()


def _is_web_url(value: str | None) -> bool:
    return bool(value) and urlsplit(value or "").scheme in ("http", "https")


def _root_element(head: str) -> str | None:
    """Name of the first element, skipping the XML prolog, comments and doctype."""
    cleaned = XML_PROLOG.sub("", XML_COMMENT.sub("", head))
    match = ROOT_ELEMENT.search(cleaned)
    return match.group(1).lower() if match else None


def _decode_text(data: bytes) -> str:
    """Decode a text export (UTF-8 or UTF-16 with BOM); binary data is a SourceError."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{UNRECOGNISED}: bytes are not UTF-8 text (invalid byte at offset {exc.start})"
        ) from exc
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in ALLOWED_CONTROL_CHARS)
    if controls > MAX_CONTROL_CHAR_SHARE * len(text):
        raise SourceError(f"{UNRECOGNISED}: binary data ({controls} control characters)")
    return text


# --- small field helpers -----------------------------------------------------


def _label(value: str) -> str:
    value = collapse_whitespace(value)
    return value if len(value) <= MAX_LABEL_CHARS else value[: MAX_LABEL_CHARS - 1] + "…"


def _one_line(value: str) -> str:
    value = collapse_whitespace(value)
    return value if len(value) <= MAX_REASON_CHARS else value[: MAX_REASON_CHARS - 1] + "…"


def _unique(values: Iterable[str]) -> list[str]:
    """Non-empty values, first occurrence kept, order preserved."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            out.append(value)
    return out


def _absolute_url(link: str | None, *bases: str | None) -> str | None:
    """Resolve a link against the first usable base; None when it stays relative."""
    if not link or not link.strip():
        return None
    link = link.strip()
    for base in bases:
        if _is_absolute(link):
            break
        if base and _is_absolute(base):
            link = urljoin(base, link)
    return link if _is_absolute(link) else None


def _is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme and (parts.netloc or parts.scheme in ("mailto", "urn", "tag")))


def _as_utc(value: datetime) -> datetime:
    """Naive times are taken as UTC: a feed that omits the zone rarely means local time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_date(value: object) -> datetime | None:
    """ISO-8601 or RFC 822 date string to aware UTC; None for anything unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return _as_utc(datetime.fromisoformat(text))
    except ValueError:
        # Not ISO-8601; RFC 822 is the other format feeds and exports use.
        return _parse_rfc822(text)


def _parse_rfc822(text: str) -> datetime | None:
    try:
        return _as_utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _struct_time_to_utc(value: Any) -> datetime | None:
    """feedparser's UTC struct_time to an aware datetime; None when out of range."""
    if not value:
        return None
    try:
        year, month, day, hour, minute, second = tuple(value)[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


# --- RSS and Atom ------------------------------------------------------------


def _parse_markup(
    data: bytes,
    head: str,
    location: str | None,
    content_type: str | None,
    limits: IngestLimits,
) -> ParseResult:
    root = _root_element(head)
    if root == "html" or (root is None and HTML_DOCTYPE.search(head)):
        return _parse_html_page(data, location, content_type, limits)
    if root in FEED_ROOTS:
        return _parse_feed(data, location, content_type, limits)
    parsed = _run_feedparser(data, location, content_type)
    if parsed.get("version") or parsed.entries:
        return _parse_feed(data, location, content_type, limits, parsed=parsed)
    if root in HTML_ROOTS or HTML_DOCTYPE.search(head):
        return _parse_html_page(data, location, content_type, limits)
    raise SourceError(f"{UNRECOGNISED}: XML document with root element <{root or '?'}>")


def _run_feedparser(
    data: bytes, location: str | None, content_type: str | None
) -> feedparser.FeedParserDict:
    headers: dict[str, str] = {}
    if _is_web_url(location):
        # feedparser resolves relative links against Content-Location and xml:base.
        headers["content-location"] = location or ""
    if content_type:
        # The declared charset decides the encoding when the document itself does not.
        headers["content-type"] = content_type
    # A stream, never a str: feedparser would treat a str as a URL or file name to open.
    return feedparser.parse(io.BytesIO(data), response_headers=headers)


def _parse_feed(
    data: bytes,
    location: str | None,
    content_type: str | None,
    limits: IngestLimits,
    *,
    parsed: feedparser.FeedParserDict | None = None,
) -> ParseResult:
    if parsed is None:
        parsed = _run_feedparser(data, location, content_type)
    feed = parsed.feed
    warnings: list[str] = []
    # A missing HTTP Content-Type says nothing about the document itself.
    if parsed.bozo and not isinstance(parsed.bozo_exception, feedparser.NonXMLContentType):
        problem = _one_line(f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}")
        harmless = isinstance(parsed.bozo_exception, feedparser.ThingsNobodyCaresAboutButMe)
        if not parsed.entries and not harmless:
            raise SourceError(f"feed is not well-formed and has no entries: {problem}")
        warnings.append(f"feed is not well-formed; parsed leniently ({problem})")
    version = str(parsed.get("version") or "")
    result_format = FORMAT_ATOM if version.startswith("atom") else FORMAT_RSS
    feed_title = html_to_line(feed.get("title", "")) or None
    feed_link = feed.get("link")
    feed_language = normalise_language(feed.get("language"))
    collector = _Collector(limits)
    for number, entry in enumerate(parsed.entries, start=1):
        collector.add(
            f"entry #{number}",
            partial(_feed_entry, entry, feed_title, feed_language, location, feed_link, warnings),
        )
    return ParseResult(
        format=result_format,
        articles=collector.articles,
        errors=collector.errors,
        feed_title=feed_title,
        warnings=warnings,
    )


def _feed_entry(
    entry: dict[str, Any],
    feed_title: str | None,
    feed_language: str | None,
    location: str | None,
    feed_link: str | None,
    warnings: list[str],
) -> _Draft:
    raw_link = entry.get("link") or _alternate_link(entry)
    url = _absolute_url(raw_link, location, feed_link)
    guid = collapse_whitespace(str(entry.get("id") or "")) or None
    if raw_link and url is None:
        warnings.append(f"{_label(guid or raw_link)}: relative link {raw_link!r} without a base")
    body, body_language = _feed_body(entry)
    title_detail = entry.get("title_detail") or {}
    published = None
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: feedparser's own get() maps updated_parsed to published_parsed
        # with a DeprecationWarning, which pytest turns into an error.
        published = _struct_time_to_utc(dict.get(entry, key))
        if published:
            break
    tags = [html_to_line(t.get("term") or t.get("label") or "") for t in entry.get("tags", [])]
    author = html_to_line(entry.get("author") or "") or None
    return _Draft(
        guid=guid,
        url=url,
        title=html_to_line(entry.get("title") or ""),
        body=body,
        published=published,
        language=(
            body_language
            or normalise_language(title_detail.get("language"))
            or normalise_language(entry.get("language"))
            or feed_language
        ),
        tags=tags,
        source=feed_title,
        author=author,
    )


def _alternate_link(entry: Mapping[str, Any]) -> str | None:
    for link in entry.get("links", []):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    return None


def _feed_body(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """Full content when present, else the summary; with its declared language."""
    candidates: list[Mapping[str, Any]] = [
        c for c in entry.get("content", []) if isinstance(c.get("value"), str)
    ]
    candidates.sort(key=lambda c: "html" not in str(c.get("type", "")))
    summary = entry.get("summary_detail")
    if summary:
        candidates.append(summary)
    elif entry.get("summary"):
        candidates.append({"value": entry["summary"], "type": "text/html"})
    for candidate in candidates:
        is_html = str(candidate.get("type", "text/html")) != "text/plain"
        text = body_to_text(str(candidate["value"]), is_html=is_html)
        if text:
            return text, normalise_language(candidate.get("language"))
    return "", None


# --- JSON Feed, JSONL and JSON arrays ------------------------------------------


def _parse_json_family(
    data: bytes, location: str | None, limits: IngestLimits, *, jsonl_hint: bool
) -> ParseResult:
    document: Any = None
    whole_parses = False
    if not jsonl_hint:
        try:
            document = json.loads(data)
            whole_parses = True
        except (ValueError, UnicodeDecodeError):
            whole_parses = False  # maybe JSON Lines; decided below
    if whole_parses and isinstance(document, dict) and isinstance(document.get("items"), list):
        return _parse_json_feed(document, location, limits)
    if whole_parses and isinstance(document, dict) and "items" in document:
        raise SourceError("JSON Feed whose 'items' is not a list")
    if whole_parses and isinstance(document, list):
        collector = _Collector(limits)
        for number, record in enumerate(document, start=1):
            label = f"item #{number}"
            collector.add(label, partial(_record, record, label, location))
        return ParseResult(FORMAT_JSON_ARRAY, collector.articles, collector.errors, None)
    if whole_parses and not isinstance(document, dict):
        raise SourceError(f"{UNRECOGNISED}: JSON {type(document).__name__} at top level")
    return _parse_jsonl(_decode_text(data), location, limits)


def _parse_jsonl(text: str, location: str | None, limits: IngestLimits) -> ParseResult:
    collector = _Collector(limits)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        label = f"line {number}"
        collector.add(label, partial(_jsonl_line, line, label, location))
    if (
        collector.errors
        and not collector.articles
        and all("invalid JSON" in error.reason for error in collector.errors)
    ):
        raise SourceError(f"{UNRECOGNISED}: no line of it is valid JSON")
    return ParseResult(FORMAT_JSONL, collector.articles, collector.errors, None)


def _jsonl_line(line: str, label: str, location: str | None) -> _Draft:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InvalidEntryError(f"{label}: invalid JSON ({exc})") from exc
    return _record(record, label, location)


def _record(record: Any, label: str, location: str | None) -> _Draft:
    """One article object of the JSONL / JSON array shape, types checked."""
    if not isinstance(record, dict):
        raise InvalidEntryError(f"{label}: expected a JSON object, got {type(record).__name__}")
    for key in JSONL_STRING_FIELDS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise InvalidEntryError(f"{label}: field '{key}' must be a string")
    raw_id = record.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        raise InvalidEntryError(f"{label}: field 'id' must be a string or an integer")
    tags = record.get("tags")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidEntryError(f"{label}: field 'tags' must be a list of strings")
    return _Draft(
        guid=str(raw_id).strip() or None if raw_id is not None else None,
        url=_absolute_url(record.get("url"), location),
        title=html_to_line(record.get("title") or ""),
        body=body_to_text(record.get("body") or ""),
        published=parse_date(record.get("published")),
        language=normalise_language(record.get("language")),
        tags=[collapse_whitespace(tag) for tag in tags],
        source=collapse_whitespace(record.get("source") or "") or None,
        author=collapse_whitespace(record.get("author") or "") or None,
    )


def _parse_json_feed(
    document: dict[str, Any], location: str | None, limits: IngestLimits
) -> ParseResult:
    feed_title = html_to_line(_string(document.get("title"))) or None
    home = _string(document.get("home_page_url")) or None
    feed_url = _string(document.get("feed_url")) or None
    feed_language = normalise_language(_string(document.get("language")))
    feed_author = _json_feed_author(document)
    collector = _Collector(limits)
    for number, item in enumerate(document["items"], start=1):
        label = f"item #{number}"

        def build(item: Any = item, label: str = label) -> _Draft:
            if not isinstance(item, dict):
                kind = type(item).__name__
                raise InvalidEntryError(f"{label}: expected a JSON object, got {kind}")
            return _json_feed_item(
                item, label, (location, home, feed_url), feed_title, feed_language, feed_author
            )

        collector.add(label, build)
    return ParseResult(FORMAT_JSON_FEED, collector.articles, collector.errors, feed_title)


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _json_feed_author(obj: Mapping[str, Any]) -> str | None:
    """JSON Feed 1.1 ``authors`` list, or 1.0's single ``author`` object."""
    authors = obj.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], dict):
        return collapse_whitespace(_string(authors[0].get("name"))) or None
    author = obj.get("author")
    if isinstance(author, dict):
        return collapse_whitespace(_string(author.get("name"))) or None
    return None


def _json_feed_item(
    item: Mapping[str, Any],
    label: str,
    bases: tuple[str | None, ...],
    feed_title: str | None,
    feed_language: str | None,
    feed_author: str | None,
) -> _Draft:
    raw_id = item.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        raise InvalidEntryError(f"{label}: field 'id' must be a string")
    for key in JSON_FEED_STRING_FIELDS:
        if item.get(key) is not None and not isinstance(item[key], str):
            raise InvalidEntryError(f"{label}: field '{key}' must be a string")
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise InvalidEntryError(f"{label}: field 'tags' must be a list of strings")
    if item.get("content_html"):
        body = html_to_text(str(item["content_html"]))
    else:
        body = plain_text_paragraphs(str(item.get("content_text") or item.get("summary") or ""))
    raw_link = item.get("url") or item.get("external_url")
    return _Draft(
        guid=collapse_whitespace(str(item.get("id") or "")) or None,
        url=_absolute_url(str(raw_link) if raw_link else None, *bases),
        title=html_to_line(str(item.get("title") or "")),
        body=body,
        published=parse_date(item.get("date_published")) or parse_date(item.get("date_modified")),
        language=normalise_language(_string(item.get("language"))) or feed_language,
        tags=[collapse_whitespace(tag) for tag in tags],
        source=feed_title,
        author=_json_feed_author(item) or feed_author,
    )


# --- a single HTML article page ------------------------------------------------


class _HeadReader(HTMLParser):
    """Reads what trafilatura does not report reliably: lang, canonical URL, first <h1>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.canonical: str | None = None
        self.og_url: str | None = None
        self.published: str | None = None
        self.title_parts: list[str] = []
        self.h1_parts: list[str] = []
        self.charset: str | None = None
        self._in: str | None = None
        self._h1_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): value or "" for name, value in attrs}
        if tag == "html" and self.lang is None:
            self.lang = values.get("lang") or values.get("xml:lang") or None
        elif tag == "link" and "canonical" in values.get("rel", "").lower().split():
            self.canonical = self.canonical or values.get("href") or None
        elif tag == "meta":
            self._meta(values)
        elif tag == "title" and not self.title_parts:
            self._in = "title"
        elif tag == "h1" and not self._h1_done:
            self._in = "h1"

    def _meta(self, values: Mapping[str, str]) -> None:
        key = (values.get("property") or values.get("name") or "").lower()
        content = values.get("content", "")
        if key == "og:url":
            self.og_url = self.og_url or content or None
        elif key in ("article:published_time", "datepublished", "dc.date.issued"):
            self.published = self.published or content or None
        if values.get("charset"):
            self.charset = self.charset or values["charset"]

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            if tag == "h1":
                self._h1_done = True
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title_parts.append(data)
        elif self._in == "h1":
            self.h1_parts.append(data)


CHARSET_IN_CONTENT_TYPE = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


def _decode_html(data: bytes, content_type: str | None) -> str:
    """Decode a page by BOM, HTTP charset, <meta charset>, then UTF-8 with replacement."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    candidates: list[str] = []
    header = CHARSET_IN_CONTENT_TYPE.search(content_type or "")
    if header:
        candidates.append(header.group(1))
    meta = META_CHARSET.search(data[:SNIFF_BYTES])
    if meta:
        candidates.append(meta.group(1).decode("ascii", errors="replace"))
    for charset in candidates:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue  # a wrong declaration is common; try the next clue
    return data.decode("utf-8", errors="replace")


def _parse_html_page(
    data: bytes, location: str | None, content_type: str | None, limits: IngestLimits
) -> ParseResult:
    import trafilatura  # heavy import, paid only by callers that ingest pages

    page = _decode_html(data, content_type)
    head = _HeadReader()
    head.feed(page)
    head.close()
    web_location = location if _is_web_url(location) else None
    metadata = trafilatura.extract_metadata(page, default_url=web_location)
    extracted = trafilatura.extract(
        page,
        url=web_location,
        output_format="html",
        include_comments=False,
        include_tables=True,
        with_metadata=False,
    )
    title = (
        html_to_line(metadata.title or "")
        or html_to_line("".join(head.h1_parts))
        or html_to_line("".join(head.title_parts))
    )
    paragraphs = html_to_text(extracted or "").split(PARAGRAPH_SEPARATOR)
    if paragraphs and title and paragraphs[0].casefold() == title.casefold():
        paragraphs = paragraphs[1:]  # the page's <h1> repeats the headline
    body = PARAGRAPH_SEPARATOR.join(p for p in paragraphs if p)
    url = _absolute_url(head.canonical or head.og_url, web_location) or web_location
    published = parse_date(head.published) or parse_date(metadata.date)
    source = html_to_line(metadata.sitename or "") or None
    tags = [html_to_line(t) for t in [*(metadata.categories or []), *(metadata.tags or [])]]
    draft = _Draft(
        guid=None,
        url=url,
        title=title,
        body=body,
        published=published,
        language=normalise_language(head.lang),
        tags=tags,
        source=source,
        author=html_to_line(metadata.author or "") or None,
    )
    collector = _Collector(limits)
    collector.add(url or location or "page", lambda: draft)
    return ParseResult(FORMAT_HTML, collector.articles, collector.errors, source)


# --- the outlet's plain-text export -------------------------------------------


def _is_boilerplate(paragraph: str) -> bool:
    return len(paragraph) <= MAX_BOILERPLATE_CHARS and any(
        pattern.search(paragraph) for pattern in TRAILING_BOILERPLATE
    )


def _parse_text_export(text: str, location: str | None, limits: IngestLimits) -> ParseResult:
    """Headline, optional "| Tag, Tag" line, body; "See Also" and site notices cut off."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    position = 0
    while position < len(lines) and not lines[position].strip():
        position += 1
    title = collapse_whitespace(lines[position]) if position < len(lines) else ""
    position += 1
    tags: list[str] = []
    look = position
    while look < len(lines) and not lines[look].strip():
        look += 1
    if look < len(lines) and lines[look].lstrip().startswith(TAG_LINE_PREFIX):
        tag_text = lines[look].lstrip()[len(TAG_LINE_PREFIX) :]
        tags = [collapse_whitespace(tag) for tag in tag_text.split(",")]
        position = look + 1
    body_lines: list[str] = []
    for line in lines[position:]:
        if SEE_ALSO_LINE.match(line):
            break
        body_lines.append(line)
    paragraphs = plain_text_paragraphs("\n".join(body_lines)).split(PARAGRAPH_SEPARATOR)
    while paragraphs and (not paragraphs[-1] or _is_boilerplate(paragraphs[-1])):
        paragraphs.pop()
    web_location = location if _is_web_url(location) else None
    draft = _Draft(
        url=web_location,
        title=title,
        body=PARAGRAPH_SEPARATOR.join(paragraphs),
        tags=tags,
    )
    collector = _Collector(limits)
    collector.add(location or "text export", lambda: draft)
    return ParseResult(FORMAT_TEXT, collector.articles, collector.errors, None)
