"""Reading a source: a file, standard input or an HTTP(S) URL, always within the limits.

Nothing here parses; every failure to get the bytes becomes a SourceError with
a one-line reason that an editor can act on ("HTTP 404 Not Found ...") and that
is safe on the public status page. URLs are fetched through the outbound guard
(alerts.netguard), which refuses the server's own networks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from alerts.config import get_settings
from alerts.ingest.formats import SourceError
from alerts.ingest.limits import IngestLimits
from alerts.netguard import (
    MAX_REDIRECTS,
    Outbound,
    OutboundError,
    OutboundTimeoutError,
    Reply,
    ResponseTooLargeError,
    TooManyRedirectsError,
)

USER_AGENT = "alerts-ingest/0.1 (+newsroom alert system)"
STDIN_SPEC = "-"
WEB_SCHEMES = ("http://", "https://")
# Read in pieces so an oversized source is noticed before it is held in memory.
READ_CHUNK_BYTES = 64 * 1024
HTTP_NOT_MODIFIED = 304
HTTP_ERROR_FROM = 400
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, text/plain;q=0.7, */*;q=0.5"
)


@dataclass
class FetchResult:
    """What one HTTP fetch returned; ``data`` is None on 304 Not Modified."""

    data: bytes | None
    status: int
    etag: str | None
    last_modified: str | None
    content_type: str | None
    url: str


def _too_large(limits: IngestLimits, what: str) -> SourceError:
    return SourceError(
        f"{what} is over the limit of {limits.max_source_bytes} bytes (max_source_bytes)"
    )


def fetch_url(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limits: IngestLimits = IngestLimits(),  # noqa: B008 - frozen dataclass, safe as a default
    outbound: Outbound | None = None,
) -> FetchResult:
    """Conditional GET of ``url`` through the outbound guard, within ``limits``.

    Pass the ETag / Last-Modified from the previous fetch to get a cheap 304.
    ``limits.fetch_timeout`` bounds the whole fetch (every redirect and the
    body), and ``limits.max_source_bytes`` the body once decoded. ``outbound``
    defaults to the guard the settings describe.
    """
    guard = outbound or Outbound.from_settings(get_settings())
    headers = {"User-Agent": USER_AGENT, "Accept": FEED_ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with guard.open(
            "GET", url, headers=headers, timeout=limits.fetch_timeout, max_redirects=MAX_REDIRECTS
        ) as reply:
            return _read_reply(reply, url, limits)
    except OutboundTimeoutError as error:
        raise SourceError(f"timed out after {limits.fetch_timeout:g} s fetching {url}") from error
    except TooManyRedirectsError as error:
        raise SourceError(f"too many redirects fetching {url}") from error
    except ResponseTooLargeError as error:
        raise _too_large(limits, f"response from {url}") from error
    except OutboundError as error:
        raise SourceError(f"cannot fetch {url}: {error}") from error


def _read_reply(reply: Reply, url: str, limits: IngestLimits) -> FetchResult:
    result = FetchResult(
        data=None,
        status=reply.status_code,
        etag=reply.headers.get("etag"),
        last_modified=reply.headers.get("last-modified"),
        content_type=reply.headers.get("content-type"),
        url=reply.url,
    )
    if reply.status_code == HTTP_NOT_MODIFIED:
        return result
    if reply.status_code >= HTTP_ERROR_FROM:
        raise SourceError(f"HTTP {reply.status_code} {reply.reason_phrase} from {url}")
    declared = reply.headers.get("content-length", "")
    if (
        declared.isdigit()
        and int(declared) > limits.max_source_bytes
        and "content-encoding" not in reply.headers
    ):
        raise _too_large(limits, f"response of {declared} bytes from {url}")
    result.data = reply.read(limits.max_source_bytes)
    return result


def _read_capped(stream: BinaryIO, limits: IngestLimits, what: str) -> bytes:
    """Read at most one byte past the limit, so an endless stream cannot exhaust memory."""
    chunks: list[bytes] = []
    received = 0
    while True:
        chunk = stream.read(READ_CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > limits.max_source_bytes:
            raise _too_large(limits, what)
        chunks.append(chunk)


def read_source(
    spec: str,
    *,
    limits: IngestLimits = IngestLimits(),  # noqa: B008 - frozen dataclass, safe as a default
    stdin: BinaryIO | None = None,
) -> tuple[bytes, str | None]:
    """Bytes and declared content type of a file path, http(s) URL or "-" for stdin.

    Files and stdin have no declared type (None); parse_document sniffs them.
    """
    if spec == STDIN_SPEC:
        return _read_capped(stdin or sys.stdin.buffer, limits, "standard input"), None
    if spec.lower().startswith(WEB_SCHEMES):
        fetched = fetch_url(spec, limits=limits)
        return fetched.data or b"", fetched.content_type
    path = Path(spec)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SourceError(f"{spec} is a directory, not a file")
        if size > limits.max_source_bytes:
            raise _too_large(limits, f"file {spec} ({size} bytes)")
        with path.open("rb") as handle:
            return _read_capped(handle, limits, f"file {spec}"), None
    except FileNotFoundError as exc:
        raise SourceError(f"no such file: {spec}") from exc
    except PermissionError as exc:
        raise SourceError(f"permission denied reading {spec}") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {spec}: {exc.strerror or exc}") from exc
