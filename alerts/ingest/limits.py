"""Size limits that keep one hostile or broken source from exhausting a worker."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_SOURCE_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 5000
DEFAULT_MAX_TITLE_CHARS = 1000
DEFAULT_MAX_BODY_CHARS = 200_000
DEFAULT_FETCH_TIMEOUT = 20.0


@dataclass(frozen=True)
class IngestLimits:
    """Per-source ceilings; anything beyond them is reported, never truncated silently.

    max_source_bytes: raw bytes read from a file, stdin or HTTP response (after
        content decoding, so a gzip bomb is caught too).
    max_entries: entries taken from one document; the rest become EntryErrors.
    max_title_chars / max_body_chars: an entry whose cleaned title or body is
        longer is rejected as an EntryError naming the limit.
    fetch_timeout: seconds for the whole HTTP fetch, including the body.
    """

    max_source_bytes: int = DEFAULT_MAX_SOURCE_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_title_chars: int = DEFAULT_MAX_TITLE_CHARS
    max_body_chars: int = DEFAULT_MAX_BODY_CHARS
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT
