"""Article ingest: turn feeds, JSON, pages and text exports into plain-text articles.

Storage and deduplication live elsewhere; this package only reads and parses,
and reports every entry it could not use together with the reason.
"""

from alerts.ingest.fetch import FetchResult, fetch_url, read_source
from alerts.ingest.formats import (
    EntryError,
    ParsedArticle,
    ParseResult,
    SourceError,
    parse_date,
    parse_document,
)
from alerts.ingest.limits import IngestLimits
from alerts.ingest.text import content_fingerprint, detect_language, html_to_text

__all__ = [
    "EntryError",
    "FetchResult",
    "IngestLimits",
    "ParseResult",
    "ParsedArticle",
    "SourceError",
    "content_fingerprint",
    "detect_language",
    "fetch_url",
    "html_to_text",
    "parse_date",
    "parse_document",
    "read_source",
]
